"""Can stackwise's Transformer learn to copy? Train a small model on random tokens in which a span is repeated; the
repeat is predictable only by copying, so its loss falls towards 0 once the model copies, while the rest stays at
log(vocab). Prints both losses every 100 steps.

Two forms of the task:
- `--offset fixed` (the classic demonstration): sequences `x1 .. xH x1 .. xH` with H = --half, so every copied
  token sits exactly H positions after its source. A model can solve this with a *positional* rule (attend H
  tokens back, easy with RoPE) and needs no induction head.
- `--offset variable`: each sequence holds one repeated span of random length (H/4 .. H) at a random place in a
  2H-token window of random tokens, so the distance to the source changes from sequence to sequence, as in text.
  Only content-based matching (an induction head: find the earlier occurrence of the current token, predict what
  followed it) solves it.

    python benchmarks/induction_toy.py [--offset fixed|variable --layers 2 --d-model 64 --steps 800 --batch 32
                                        --half 32 --vocab 128 --lr 3e-3 --rope-theta 10000
                                        --init-std 0.02]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from stackwise import config as config_mod
from stackwise.model import Transformer


def batch(args, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences (B, 2H) and a mask of the targets that are copies (B, 2H - 1)."""
    if args.offset == "fixed":
        half = torch.randint(0, args.vocab, (args.batch, args.half), generator=gen)
        x = torch.cat([half, half], 1)
        mask = torch.zeros(args.batch, 2 * args.half - 1, dtype=torch.bool)
        mask[:, args.half:] = True  # targets half.. are copies (target i is token i + 1)
        return x, mask
    x = torch.randint(0, args.vocab, (args.batch, 2 * args.half), generator=gen)
    mask = torch.zeros(args.batch, 2 * args.half - 1, dtype=torch.bool)
    for row in range(args.batch):
        n = int(torch.randint(args.half // 4, args.half + 1, (1,), generator=gen))
        start = int(torch.randint(0, 2 * args.half - 2 * n + 1, (1,), generator=gen))
        x[row, start + n:start + 2 * n] = x[row, start:start + n]
        mask[row, start + n:start + 2 * n - 1] = True  # the copy's tokens after its first (which is not predictable)
    return x, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offset", choices=["fixed", "variable"], default="fixed")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=128)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--half", type=int, default=32, help="half the sequence length (the longest repeated span)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--rope-theta", type=float, default=10000.0)
    parser.add_argument("--init-std", type=float, default=0.02)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0) if args.offset == "variable" else None
    cfg = config_mod.load("default", {"model.d_model": args.d_model, "model.n_layers": args.layers,
                                      "model.n_heads": args.heads, "model.vocab_size": args.vocab,
                                      "model.rope_theta": args.rope_theta, "model.init_std": args.init_std})
    model = Transformer(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), args.lr)
    start = time.perf_counter()
    print("| step | other tokens' loss | copied tokens' loss | s |\n|---:|---:|---:|---:|")
    for step in range(1, args.steps + 1):
        x, copied = batch(args, gen)
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten(), reduction="none")
        loss = loss.view(args.batch, -1)
        loss.mean().backward()
        opt.step()
        opt.zero_grad()
        if step % 100 == 0:
            other = ~copied
            if args.offset == "fixed":  # (as first published: the whole random half, target half-1 left out)
                other = torch.zeros_like(copied)
                other[:, :args.half - 1] = True
            print(f"| {step} | {loss[other].mean():.3f} | {loss[copied].mean():.3f} "
                  f"| {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
