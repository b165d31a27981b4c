"""Atomic checkpoints and resume.

A checkpoint is a folder `checkpoints/step_NNNNNNN/`:
  model.safetensors   weights (our names; a tied LM head is stored once)
  optimizer.pt        optimizer state_dict (tensors and numbers only: loads with weights_only=True)
  trainer.pt          step, token/FLOP/time counters, loader position, RNG states
  config.yaml         the run's config, so the architecture is rebuilt from what the checkpoint records
It is written under a temporary name, every file fsynced, then renamed into place: a folder with the final name is
complete. Resume takes the newest checkpoint that loads.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_model, save_model

from stackwise import config as config_mod
from stackwise.errors import UserError

PREFIX = "step_"
PROTECTED = "KEEP"
FILES = ("model.safetensors", "optimizer.pt", "trainer.pt", "config.yaml")


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
         cfg: config_mod.Config, keep: int | None = None, protect: bool = False) -> Path:
    """Write checkpoints/step_NNNNNNN atomically; then drop all but the newest `keep` (None keeps all).

    A protected checkpoint (the end of a growth stage) is never dropped by that rotation."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"{PREFIX}{step:07d}"
    tmp = ckpt_dir / f".tmp-{PREFIX}{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({**trainer, "rng": rng_state()}, tmp / "trainer.pt")
    config_mod.save(cfg, tmp / "config.yaml")
    if protect:
        (tmp / PROTECTED).write_text("end of a growth stage: kept by checkpoint rotation\n")
    for name in FILES:
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
    optimizer: dict[str, Any]


def read(path: Path) -> Loaded:
    """Config, trainer and optimizer state of one checkpoint (weights are loaded into a model by load_weights)."""
    missing = [n for n in FILES if not (path / n).is_file()]
    if missing:
        raise UserError(f"{path}: incomplete checkpoint (missing {', '.join(missing)})")
    try:
        cfg = config_mod.from_dict(yaml.safe_load((path / "config.yaml").read_text()))
        trainer = torch.load(path / "trainer.pt", weights_only=True)
        optimizer = torch.load(path / "optimizer.pt", weights_only=True)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    return Loaded(path, cfg, trainer, optimizer)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    try:
        load_model(model, str(path / "model.safetensors"), strict=True)
    except Exception as e:
        raise UserError(f"{path}: weights do not match the model ({type(e).__name__}: {e})") from None


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
