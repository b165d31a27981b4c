"""Per-depth training-step times measured in one short interleaved pass, to price runs in the same time window.

A shared machine's speed drifts (a step can slow by a third within an hour), so wall times of runs made one after
another are not comparable. `step_seconds` times a few optimizer steps at every depth that any run used, round-robin
in one process, and takes the median per depth; compare then re-costs each run's steps with these times
("calibrated wall time"). Arms whose steps cost differently at the same depth (another optimizer, width or batch:
config.COST_FIELDS) get their own per-depth times from the same pass, so an optimizer's extra work counts (for
Sophia, timed over whole periods of its Hessian estimate, the estimate's cost is spread over the steps as in training).
"""

from __future__ import annotations

import statistics
import time

import torch

from stackwise import config as config_mod
from stackwise import data as data_mod
from stackwise import parallel, sophia
from stackwise.data.loader import TrainLoader
from stackwise.model import Transformer
from stackwise.optim import build_optimizer
from stackwise.train import autocast_for, train_step


def step_seconds(setups: list[tuple[config_mod.Config, int]], steps: int = 3, rounds: int = 3,
                 warmup: int = 2) -> list[float]:
    """Median seconds per training step of each (config, depth), timed round-robin in one process."""
    built = []
    for cfg, d in setups:
        device = parallel.device_for(cfg)
        parallel.configure_backend(device)
        data = data_mod.prepare(cfg, log=lambda *_: None)
        torch.manual_seed(cfg.train.seed)
        model = Transformer(cfg.model, n_layers=d).to(device)
        loader = TrainLoader(data.train, cfg.train.batch_size, cfg.train.seq_len, cfg.train.seed)
        built.append((model, parallel.wrap(model, cfg), build_optimizer(model, cfg), loader, cfg, device,
                      autocast_for(cfg, device)))

    def run(i: int, n: int) -> float:
        model, run_model, opt, loader, cfg, device, autocast = built[i]
        t0 = time.perf_counter()
        for _ in range(n):
            train_step(model, run_model, opt, loader.next(), cfg, device, autocast)
        return (time.perf_counter() - t0) / n

    for i in range(len(built)):
        run(i, warmup)
    times: list[list[float]] = [[] for _ in built]
    order = list(range(len(built)))
    for r in range(rounds):
        for i in order if r % 2 == 0 else order[::-1]:
            sophia_g = built[i][2].sophia_g  # whole periods of its Hessian estimate (one more pass every k steps)
            times[i].append(run(i, sophia.EVERY * -(-steps // sophia.EVERY) if sophia_g else steps))
    return [statistics.median(ts) for ts in times]
