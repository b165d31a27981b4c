"""Per-depth training-step times measured in one short interleaved pass, to price runs in the same time window.

A shared machine's speed drifts (a step can slow by a third within an hour), so wall times of runs made one after
another are not comparable. `step_seconds` times a few optimizer steps at every depth that any run used, round-robin
in one process, and takes the median per depth; compare then re-costs each run's steps with these times
("calibrated wall time").
"""

from __future__ import annotations

import statistics
import time

import torch

from stackwise import config as config_mod
from stackwise import data as data_mod
from stackwise import parallel
from stackwise.data.loader import TrainLoader
from stackwise.model import Transformer
from stackwise.optim import build_optimizer
from stackwise.train import autocast_for, train_step


def step_seconds(cfg: config_mod.Config, depths: list[int], steps: int = 3, rounds: int = 3,
                 warmup: int = 2) -> dict[int, float]:
    device = parallel.device_for(cfg)
    parallel.configure_backend(device)
    data = data_mod.prepare(cfg, log=lambda *_: None)
    autocast = autocast_for(cfg, device)
    loader = TrainLoader(data.train, cfg.train.batch_size, cfg.train.seq_len, cfg.train.seed)
    setups = {}
    for d in sorted(set(depths)):
        torch.manual_seed(cfg.train.seed)
        model = Transformer(cfg.model, n_layers=d).to(device)
        setups[d] = (model, parallel.wrap(model, cfg), build_optimizer(model, cfg))

    def run(d: int, n: int) -> float:
        model, run_model, opt = setups[d]
        t0 = time.perf_counter()
        for _ in range(n):
            train_step(model, run_model, opt, loader.next(), cfg, device, autocast)
        return (time.perf_counter() - t0) / n

    for d in setups:
        run(d, warmup)
    times: dict[int, list[float]] = {d: [] for d in setups}
    order = list(setups)
    for r in range(rounds):
        for d in order if r % 2 == 0 else order[::-1]:
            times[d].append(run(d, steps))
    return {d: statistics.median(ts) for d, ts in times.items()}
