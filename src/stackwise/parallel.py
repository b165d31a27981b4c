"""Processes, devices, and the wrappers applied to the model from outside: per-block torch.compile and DDP.

The model file knows nothing of these. `wrap` returns the module the training step calls, while the plain model
(whose parameters the optimizer holds and checkpoints store) stays reachable; at a growth event the trainer calls
`unwrap`, grows the plain model, and wraps again (a new DDP wrapper over the new parameter list).

Under torchrun (`torchrun --nproc_per_node N -m stackwise train ... --train.parallel ddp`) each process is one rank;
every rank trains on its own disjoint slice of the same global batch, and rank 0 alone writes logs and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from stackwise.config import Config
from stackwise.errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_world(cfg: Config) -> World:
    """Join the torchrun process group (gloo on CPU, NCCL on GPU) when there is more than one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if cfg.train.parallel == "none":
        raise UserError(f"train.parallel: none, but torchrun started {size} processes; use ddp")
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        cuda = cfg.train.device != "cpu" and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    return world


def device_for(cfg: Config, world: World = World()) -> torch.device:
    want = cfg.train.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device: cuda requested but no CUDA device is available")
    return torch.device(f"cuda:{world.local_rank}") if want == "cuda" else torch.device("cpu")


def configure_backend(device: torch.device) -> None:
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormals make the first CPU steps ~10x slower
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def unwrap(model: nn.Module) -> nn.Module:
    """Undo `wrap` before the layer list changes: drop per-block compilation (the DDP wrapper is simply replaced)."""
    for block in model.layers:
        block._compiled_call_impl = None
    return model


def wrap(model: nn.Module, cfg: Config, world: World = World()) -> nn.Module:
    """Compile each block in place (state-dict names unchanged), as torchtitan does; then DDP across ranks."""
    if cfg.train.compile:
        for block in model.layers:
            block.compile()
    if cfg.train.parallel == "ddp" and world.size > 1:
        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model


def mean_across_ranks(value: float, world: World, device: torch.device) -> float:
    if world.size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / world.size


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()
