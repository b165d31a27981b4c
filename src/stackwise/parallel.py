"""Processes, devices, and the wrappers applied to the model from outside: per-block torch.compile, DDP and FSDP2.

The model file knows nothing of these. The trainer hands a plain model and its optimizer to `wrap_for_training`,
which returns the module the training step calls and the optimizer to step; at a growth event it calls
`unwrap_for_growth`, which gives back a plain model and optimizer (with the full state), grows them exactly as in one
process, and wraps again.

- none / ddp: the plain model keeps its parameters; DDP is a new wrapper over the new parameter list at each wrap.
- fsdp: `fully_shard` on every block, then on the root (FSDP2, in place: parameters become DTensor shards), with
  `MixedPrecisionPolicy(bf16 params, fp32 reduce)` when train.dtype is bfloat16; the optimizer is rebuilt over the
  shards and given the plain optimizer's state by parameter name (torch.distributed.checkpoint.state_dict). To
  unwrap, the full model and optimizer state are gathered on every rank into a fresh plain model: growth then runs
  on whole tensors, deterministically and identically on all ranks.

Under torchrun (`torchrun --nproc_per_node N -m stackwise train ... --train.parallel ddp|fsdp`) each process is one
rank; every rank trains on its own disjoint slice of the same global batch, and rank 0 alone writes what is not
sharded (logs, events, final/). With one process, fsdp trains unsharded (the same computation).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

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


_JOINED = False  # this process joined a torchrun process group (init_world)


def init_world(cfg: Config) -> World:
    """Join the torchrun process group (gloo on CPU, NCCL on GPU) when there is more than one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if cfg.train.parallel == "none":
        raise UserError(f"train.parallel: none, but torchrun started {size} processes; use ddp or fsdp")
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        cuda = cfg.train.device != "cpu" and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    global _JOINED
    _JOINED = True
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


def memory_bytes(device: torch.device) -> int:
    """Memory available to this process: the GPU's, or the machine's (or its cgroup limit, if lower)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        return min(total, int(limit)) if limit.isdigit() else total
    except OSError:
        return total


def check_fits(cfg: Config, world: World, device: torch.device) -> None:
    """Refuse, before anything is allocated, a model whose fp32 weights, gradients and AdamW moments (16 bytes per
    parameter, divided across ranks under FSDP) and one micro-batch's logits cannot fit in memory: a lower bound on
    what training needs, so a model it refuses would certainly not train."""
    from stackwise.flops import parameter_count

    t = cfg.train
    params = parameter_count(cfg.model, cfg.model.n_layers)
    state = 16 * params // (world.size if sharded(cfg, world) else 1)
    logits = 3 * 4 * (t.batch_size // t.grad_accum // world.size) * t.seq_len * cfg.model.vocab_size
    have = memory_bytes(device)
    if state + logits > have:
        raise UserError(f"model.d_model/n_layers/vocab_size, train.batch_size/seq_len: {params:.3g} parameters and "
                        f"{t.seq_len}-token sequences need at least {(state + logits) / 2**30:.1f} GiB to train; "
                        f"{device.type} has {have / 2**30:.1f} GiB")


def sharded(cfg: Config, world: World) -> bool:
    return cfg.train.parallel == "fsdp" and world.size > 1


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
    device = next(model.parameters()).device
    if cfg.train.parallel == "ddp" and world.size > 1:
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if sharded(cfg, world):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(device.type, (world.size,))
        bf16 = cfg.train.dtype == "bfloat16"
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None,
                                      reduce_dtype=torch.float32 if bf16 else None)
        for block in model.layers:
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def wrap_for_training(model: nn.Module, optimizer, cfg: Config, world: World = World()):
    """Wrap a plain model (see `wrap`) and return (module to call, optimizer to step).

    Under FSDP the optimizer is rebuilt over the parameter shards and given the plain optimizer's state by name."""
    if not sharded(cfg, world):
        return wrap(model, cfg, world), optimizer
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    from stackwise.optim import build_optimizer

    # Read by name before sharding replaces the parameters. (An empty optimizer is left alone: asking for its
    # state dict would initialise it with a zero-gradient step.)
    state = get_optimizer_state_dict(model, optimizer.optimizers) if _has_state(optimizer) else None
    run_model = wrap(model, cfg, world)
    optimizer = build_optimizer(model, cfg)
    if state is not None:
        set_optimizer_state_dict(model, optimizer.optimizers, state, options=StateDictOptions(full_state_dict=True))
    return run_model, optimizer


def unwrap_for_growth(model: nn.Module, optimizer, cfg: Config, world: World = World()):
    """The inverse of `wrap_for_training`: a plain model and optimizer holding the full state, on every rank."""
    if not sharded(cfg, world):
        return unwrap(model), optimizer
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    from stackwise.optim import build_optimizer

    full = StateDictOptions(full_state_dict=True)
    plain = gather_model(model, cfg, everywhere=True)
    plain_optimizer = build_optimizer(plain, cfg)
    if _has_state(optimizer):
        state = get_optimizer_state_dict(model, optimizer.optimizers, options=full)
        set_optimizer_state_dict(plain, plain_optimizer.optimizers, state)
    return plain, plain_optimizer


def gather_model(model: nn.Module, cfg: Config, everywhere: bool = False) -> nn.Module | None:
    """A plain copy of a sharded model with its full weights, on rank 0 only (or on every rank); collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from stackwise.model import Transformer

    device = next(model.parameters()).device
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=not everywhere))
    if not everywhere and dist.get_rank() != 0:
        return None
    with torch.random.fork_rng(devices=[]):  # the throwaway initialisation must not move the training RNG
        plain = Transformer(model.cfg, n_layers=model.depth)
    plain.load_state_dict(state)
    return plain.to(device)


def _has_state(optimizer) -> bool:
    return any(opt.state for opt in optimizer.optimizers)


def mean_across_ranks(value: float, world: World, device: torch.device) -> float:
    if world.size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / world.size


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def joined() -> bool:
    return _JOINED


def end_process(code: int) -> NoReturn:
    """End a torchrun worker now with `code`, skipping the interpreter's teardown.

    torch's own DTensor caches (mesh topology, sharding propagation) keep the gloo process group and its threads
    alive past destroy_process_group, and tearing them down at interpreter exit now and then aborts the process
    ("terminate called without an active exception": 2 in about 100 two-node FSDP runs here), after which torchrun's
    other node waits out its 300 s exit barrier. Everything a run writes is closed before this point."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()
