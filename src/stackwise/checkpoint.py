"""Atomic checkpoints and resume.

A checkpoint is a folder `checkpoints/step_NNNNNNN/`:
  model.safetensors   weights (our names; a tied LM head is stored once)
  optimizer.pt        optimizer state_dict (tensors and numbers only: loads with weights_only=True)
  trainer.pt          step, token/FLOP/time counters, loader position, RNG states
  config.yaml         the run's config, so the architecture is rebuilt from what the checkpoint records
A sharded (FSDP) checkpoint has `dcp/` instead of model.safetensors and optimizer.pt: model and optimizer state by
parameter name, written by every rank through torch.distributed.checkpoint, and loadable at any number of processes
(one included) since loading reads each tensor whole into a plain model, which the trainer then re-shards.
It is written under a temporary name, every file fsynced, then renamed into place: a folder with the final name is
complete. Resume takes the newest checkpoint that loads.
"""

from __future__ import annotations

import os
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_model, save_model

from stackwise import config as config_mod
from stackwise.errors import UserError

PREFIX = "step_"
PROTECTED = "KEEP"
FILES = ("model.safetensors", "optimizer.pt", "trainer.pt", "config.yaml")
SHARDED = "dcp"
SHARDED_FILES = (f"{SHARDED}/.metadata", "trainer.pt", "config.yaml")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(ckpt_dir: Path, step: int, model: torch.nn.Module, optimizer, trainer: dict[str, Any],
         cfg: config_mod.Config, keep: int | None = None, protect: bool = False, sharded: bool = False) -> Path:
    """Write checkpoints/step_NNNNNNN atomically; then drop all but the newest `keep` (None keeps all).

    A protected checkpoint (the end of a growth stage) is never dropped by that rotation. With sharded=True every
    rank calls this (it is collective): each writes its shards to dcp/, and rank 0 alone writes the rest."""
    main = not sharded or dist.get_rank() == 0
    final = ckpt_dir / f"{PREFIX}{step:07d}"
    tmp = ckpt_dir / f".tmp-{PREFIX}{step:07d}"
    if main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    if sharded:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        dist.barrier()  # the folder exists before any rank writes into it
        dcp.save({"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer.optimizers)},
                 checkpoint_id=str(tmp / SHARDED))
        dist.barrier()  # every rank's shards are on disk before rank 0 seals the folder
        if not main:
            return final
        written = [str(p.relative_to(tmp)) for p in (tmp / SHARDED).iterdir()] + ["trainer.pt", "config.yaml"]
    else:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        written = list(FILES)
    torch.save({**trainer, "rng": rng_state()}, tmp / "trainer.pt")
    config_mod.save(cfg, tmp / "config.yaml")
    if protect:
        (tmp / PROTECTED).write_text("end of a growth stage: kept by checkpoint rotation\n")
    for name in written:
        _fsync(tmp / name)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync(ckpt_dir)
    if keep is not None:
        rotating = [p for p in list_checkpoints(ckpt_dir) if not (p / PROTECTED).exists()]
        for old in rotating[:-keep]:
            shutil.rmtree(old)
    return final


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


@dataclass
class Loaded:
    path: Path
    cfg: config_mod.Config
    trainer: dict[str, Any]
    optimizer: dict[str, Any] | None  # None for a sharded checkpoint (its optimizer state is in dcp/)

    @property
    def sharded(self) -> bool:
        return self.optimizer is None


def read(path: Path) -> Loaded:
    """Config, trainer and optimizer state of one checkpoint (weights are loaded into a model by load_weights)."""
    sharded = (path / SHARDED).is_dir()
    missing = [n for n in (SHARDED_FILES if sharded else FILES) if not (path / n).is_file()]
    if missing:
        raise UserError(f"{path}: incomplete checkpoint (missing {', '.join(missing)})")
    try:
        cfg = config_mod.from_dict(yaml.safe_load((path / "config.yaml").read_text()))
        trainer = torch.load(path / "trainer.pt", weights_only=True)
        optimizer = None if sharded else torch.load(path / "optimizer.pt", weights_only=True)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    return Loaded(path, cfg, trainer, optimizer)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a checkpoint's weights (either format) into a plain model."""
    try:
        if (path / SHARDED).is_dir():
            _load_sharded(model, None, path)
        else:
            load_model(model, str(path / "model.safetensors"), strict=True)
    except Exception as e:
        raise UserError(f"{path}: weights do not match the model ({type(e).__name__}: {e})") from None


def load_state(loaded: Loaded, model: torch.nn.Module, optimizer) -> None:
    """Load a checkpoint's weights and optimizer state into a plain model and its (new) optimizer."""
    if not loaded.sharded:
        load_weights(model, loaded.path)
        optimizer.load_state_dict(loaded.optimizer)
        return
    try:
        _load_sharded(model, optimizer, loaded.path)
    except Exception as e:
        raise UserError(f"{loaded.path}: state does not match the model ({type(e).__name__}: {e})") from None


def _load_sharded(model: torch.nn.Module, optimizer, path: Path) -> None:
    """Read dcp/ into a plain model (and optimizer): each tensor whole, whatever the world size that wrote it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    state = {"model": get_model_state_dict(model)}
    stored = {k[len("model."):] for k in dcp.FileSystemReader(str(path / SHARDED)).read_metadata().state_dict_metadata
              if k.startswith("model.")}
    if stored != set(state["model"]):
        extra, missing = sorted(stored - set(state["model"])), sorted(set(state["model"]) - stored)
        raise ValueError(f"unexpected {extra[:3]}, missing {missing[:3]}")
    if optimizer is not None:  # (this initialises the fresh optimizer's state, which the load then overwrites)
        state["optim"] = get_optimizer_state_dict(model, optimizer.optimizers)
    single = not (dist.is_available() and dist.is_initialized())  # e.g. `stackwise eval`, or resuming as 1 process
    with warnings.catch_warnings():  # (torch warns that it assumes one process: that is the intent here)
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        dcp.load(state, checkpoint_id=str(path / SHARDED), no_dist=single)
    set_model_state_dict(model, state["model"])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer.optimizers, state["optim"])


def latest(run_dir: Path, warn=print) -> Loaded:
    """The newest checkpoint of a run that reads cleanly; older ones are tried if the newest is damaged."""
    ckpts = list_checkpoints(run_dir / "checkpoints")
    if not ckpts:
        raise UserError(f"--resume: no checkpoint in {run_dir / 'checkpoints'}")
    for path in reversed(ckpts):
        try:
            return read(path)
        except UserError as e:
            warn(f"skipping damaged checkpoint: {e}")
    raise UserError(f"--resume: no readable checkpoint in {run_dir / 'checkpoints'}")
