"""Seconds per training step of several variants of one recipe, timed round-robin in one process (ratios are what
this measures; a shared machine's drift hits every variant alike). Each variant is LABEL or LABEL:field=value:...,
with dotted config fields as in `stackwise train`; every variant uses the trainer's own step, optimizer factory,
loader and wrapper (stackwise.calibrate.step_seconds, as the comparison's calibration pass does).

    python benchmarks/step_cost.py --config robust-growth fp32 bf16:train.dtype=bfloat16 compile:train.compile=true
    python benchmarks/step_cost.py --config robust-growth adamw muon:optim.name=muon soap:optim.name=soap \\
        psgd:optim.name=psgd
"""

from __future__ import annotations

import argparse

import torch

from stackwise import config as config_mod
from stackwise.calibrate import step_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default")
    parser.add_argument("--depth", type=int, default=None, help="layers (default: the recipe's model.n_layers)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per block")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    parser.add_argument("variants", nargs="+", help="LABEL[:field=value...]")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    setups, labels = [], []
    for spec in args.variants:
        label, *pairs = spec.split(":")
        cfg = config_mod.load(args.config, dict(p.split("=", 1) for p in pairs))
        setups.append((cfg, args.depth or cfg.model.n_layers))
        labels.append(label)
    seconds = step_seconds(setups, steps=args.steps, rounds=args.rounds)
    cfg = setups[0][0]
    print(f"recipe {args.config}: depth {setups[0][1]}, d_model {cfg.model.d_model}, batch {cfg.train.batch_size}"
          f"×{cfg.train.seq_len}, {torch.get_num_threads()} threads; median of {args.rounds} alternating blocks "
          f"of {args.steps} steps")
    print("| variant | ms / step | relative to the first |")
    print("|---|---:|---:|")
    for label, s in zip(labels, seconds):
        print(f"| {label} | {s * 1000:.1f} | {s / seconds[0]:.2f}× |")


if __name__ == "__main__":
    main()
