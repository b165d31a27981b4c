"""Our training step against a minimal hand-written loop of the same model and settings, in one process.

Both loops train their own copy of the same model (same init, same optimizer settings) on windows of the same
token file. They run in alternating blocks so that a shared machine's drifting speed hits both alike; the report
is the median block throughput of each, their ratio, and model FLOPs utilisation (MFU) against a matmul peak
measured here, in this process.

    python benchmarks/throughput.py                     # the default recipe's model
    python benchmarks/throughput.py --config tiny --rounds 4 --block 5 --train.steps 1000
Any dotted config flag works as in `stackwise train`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from stackwise import config as config_mod
from stackwise import data as data_mod
from stackwise import parallel
from stackwise.data.loader import TrainLoader
from stackwise.flops import flops_per_token
from stackwise.model import Transformer, count_parameters
from stackwise.optim import build_optimizer, lr_at, set_lr
from stackwise.train import autocast_for, train_step


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 1024, reps: int = 10) -> float:
    """Best observed FLOP/s of an n×n×n matmul (a practical peak for MFU on this machine)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds (each: one block of each loop)")
    parser.add_argument("--block", type=int, default=8, help="timed steps per block")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps of each loop before timing")
    args, rest = parser.parse_known_args()
    overrides = dict(zip([k.lstrip("-") for k in rest[::2]], rest[1::2]))
    cfg = config_mod.load(args.config, overrides)
    device = parallel.device_for(cfg)
    parallel.configure_backend(device)
    data = data_mod.prepare(cfg)
    t = cfg.train
    autocast = autocast_for(cfg, device)

    # Ours: the trainer's own step function, wrapper, optimizer factory, loader and schedule.
    torch.manual_seed(t.seed)
    ours = Transformer(cfg.model).to(device)
    ours_opt = build_optimizer(ours, cfg)
    ours_run = parallel.wrap(ours, cfg)
    loader = TrainLoader(data.train, t.batch_size, t.seq_len, t.seed)
    step_no = [0]

    def ours_step() -> None:
        set_lr(ours_opt, lr_at(step_no[0], cfg))
        train_step(ours, ours_run, ours_opt, loader.next(), cfg, device, autocast)
        step_no[0] += 1

    # Minimal: the textbook loop, written out by hand.
    torch.manual_seed(t.seed)
    plain = Transformer(cfg.model).to(device)
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=t.lr, betas=(0.9, 0.95), weight_decay=t.weight_decay,
                                  **({"fused": True} if device.type == "cuda" else {"foreach": True}))
    tokens = torch.from_numpy(np.asarray(data.train, dtype=np.int64))
    gen = torch.Generator().manual_seed(t.seed)

    def plain_step() -> None:
        starts = torch.randint(0, len(tokens) - t.seq_len - 1, (t.batch_size,), generator=gen)
        block = torch.stack([tokens[s:s + t.seq_len + 1] for s in starts.tolist()]).to(device)
        with autocast():
            loss = plain(block[:, :-1], block[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), t.grad_clip)
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)
        loss.item()

    def timed(step, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        return n * t.batch_size * t.seq_len / (time.perf_counter() - t0)

    timed(ours_step, args.warmup)
    timed(plain_step, args.warmup)
    ours_tps, plain_tps = [], []
    for r in range(args.rounds):
        order = [(ours_step, ours_tps), (plain_step, plain_tps)]
        for step, out in order if r % 2 == 0 else order[::-1]:
            out.append(timed(step, args.block))

    peak = matmul_peak(device, torch.bfloat16 if t.dtype == "bfloat16" else torch.float32)
    per_token = flops_per_token(cfg.model, cfg.model.n_layers, t.seq_len)
    o, p = statistics.median(ours_tps), statistics.median(plain_tps)
    print(f"model: {count_parameters(ours):,} parameters, depth {cfg.model.n_layers}, d_model {cfg.model.d_model}, "
          f"batch {t.batch_size}×{t.seq_len}, {t.dtype}, compile={t.compile}, optimizer {cfg.optim.name}, "
          f"{device.type}, {torch.get_num_threads()} threads")
    print(f"rounds {args.rounds} × block {args.block} steps, alternating; medians over blocks")
    print(f"stackwise step : {o:10,.0f} tokens/s   MFU {o * per_token / peak:6.1%}")
    print(f"minimal loop   : {p:10,.0f} tokens/s   MFU {p * per_token / peak:6.1%}")
    print(f"ratio stackwise / minimal: {o / p:.3f}")
    print(f"measured matmul peak: {peak / 1e9:,.1f} GFLOP/s ({'bf16' if t.dtype == 'bfloat16' else 'fp32'}, 1024³)")


if __name__ == "__main__":
    main()
