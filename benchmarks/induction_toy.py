"""Can stackwise's Transformer form an induction head at all? The classic check: train a small model on sequences of
random tokens repeated once (`x1 .. xL x1 .. xL`); the second half is predictable only by copying, so its loss falls
to ~0 once an induction head forms, while the first half stays at log(vocab). Prints both losses every 100 steps.

    python benchmarks/induction_toy.py [--layers 2 --d-model 64 --steps 800 --batch 32 --half 32 --vocab 128]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from stackwise import config as config_mod
from stackwise.model import Transformer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=128)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--half", type=int, default=32, help="length of the random part (the sequence is twice it)")
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    cfg = config_mod.load("default", {"model.d_model": args.d_model, "model.n_layers": args.layers,
                                      "model.n_heads": args.heads, "model.vocab_size": args.vocab})
    model = Transformer(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), args.lr)
    start = time.perf_counter()
    print("| step | first half loss | second half (copied) loss | s |\n|---:|---:|---:|---:|")
    for step in range(1, args.steps + 1):
        half = torch.randint(0, args.vocab, (args.batch, args.half))
        x = torch.cat([half, half], 1)
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten(), reduction="none")
        loss = loss.view(args.batch, -1)
        loss.mean().backward()
        opt.step()
        opt.zero_grad()
        if step % 100 == 0:  # targets 0..half-2 are the random part; half.. are copies
            print(f"| {step} | {loss[:, :args.half - 1].mean():.3f} | {loss[:, args.half:].mean():.3f} "
                  f"| {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
