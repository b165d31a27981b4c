"""Atomic, verified checkpoints and resume; nothing in them is ever unpickled.

A checkpoint is a folder `checkpoints/step_NNNNNNN/`:
  model.safetensors   weights (our names; a tied LM head is stored once)
  optimizer.pt        optimizer state_dict (tensors and numbers only: read with torch.load(weights_only=True))
  trainer.pt          step, token/FLOP/time counters, loader position, RNG states (weights_only=True as well)
  config.yaml         the run's config, so the architecture is rebuilt from what the checkpoint records
  KEEP                (optional) the end of a growth stage: never dropped by rotation
  manifest.json       size and SHA-256 of every other file; written last
A sharded (FSDP) checkpoint has `shards/` instead of model.safetensors and optimizer.pt: every rank writes
`shards/rankNNNNN.safetensors` with its pieces of the model and optimizer state (each piece's global shape and offset
in the file's JSON header), and rank 0 writes `shards/index.json` (world size, tensor names, the optimizer's
hyperparameters). Loading reads each tensor whole into a plain model, whatever the world size that wrote it, so a
sharded checkpoint resumes at any number of processes (one included). Only safetensors, JSON, YAML (safe loader) and
weights-only tensor files are read: a tampered checkpoint can be refused, never run code.

Every checkpoint is written under a temporary name, every file fsynced, its manifest written last, then renamed into
place; loading verifies the manifest first, so a truncated, bit-flipped or half-deleted checkpoint is refused with the
file it names, and resume falls back to the newest one that verifies. `final/` and exported folders are sealed the
same way (see `seal`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from safetensors import safe_open
from safetensors.torch import load_model, save_file, save_model

from stackwise import config as config_mod
from stackwise.errors import UserError

PREFIX = "step_"
PROTECTED = "KEEP"
MANIFEST = "manifest.json"
FILES = ("model.safetensors", "optimizer.pt", "trainer.pt", "config.yaml")
SHARDED = "shards"
SHARDED_FILES = (f"{SHARDED}/index.json", "trainer.pt", "config.yaml")
SHARDED_FORMAT = "stackwise-shards-1"
LEGACY_SHARDED = "dcp"  # torch.distributed.checkpoint's folder, whose metadata is a pickle: never read


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path) -> None:
    """fsync every file of a folder, then write manifest.json: the size and SHA-256 of each."""
    manifest = {"files": {}}
    for p in _files(folder):
        _fsync(p)
        manifest["files"][p.relative_to(folder).as_posix()] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    _fsync(folder / MANIFEST)


def seal(tmp: Path, final: Path) -> Path:
    """Finish a folder written under a temporary name: write its manifest last (write_manifest) and rename it into
    place, replacing an older folder of the same name. A folder with the final name is therefore complete, and
    `verify` detects any later damage."""
    write_manifest(tmp)
    old = final.with_name(f".old-{final.name}")
    shutil.rmtree(old, ignore_errors=True)  # (left by a kill between the two renames below)
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    _fsync(final.parent)
    return final


def verify(folder: Path) -> None:
    """Raise a one-line UserError naming the first file that is missing, extra, truncated or altered."""
    path = folder / MANIFEST
    if not path.is_file():
        raise UserError(f"{folder}: no {MANIFEST} (incomplete, or not written by this version of stackwise)")
    try:
        listed = json.loads(path.read_text())["files"]
        assert isinstance(listed, dict)
    except Exception:
        raise UserError(f"{folder}: {MANIFEST} is unreadable") from None
    present = {p.relative_to(folder).as_posix() for p in _files(folder)}
    for name in sorted(set(listed) - present):
        raise UserError(f"{folder}: {name} is missing")
    for name in sorted(present - set(listed)):
        raise UserError(f"{folder}: {name} is not in its {MANIFEST}")
    for name, want in sorted(listed.items()):
        p = folder / name
        if p.stat().st_size != want["bytes"]:
            raise UserError(f"{folder}: {name} has {p.stat().st_size} bytes, expected {want['bytes']} (truncated?)")
        if _sha256(p) != want["sha256"]:
            raise UserError(f"{folder}: {name} is damaged (SHA-256 differs from its {MANIFEST})")


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # numpy's global RNG (PSGD-Kron draws from it)
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "numpy" in state:  # (checkpoints from before it was saved restore the others)
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_failed(e: BaseException, folder: Path) -> str | None:
    """Why writing into `folder` failed, for errors that are the disk's and not ours (None otherwise)."""
    if isinstance(e, OSError):
        return "disk full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
    text = str(e)
    # torch.save's C++ zip writer and safetensors' Rust writer report I/O failures in their own words
    if not (isinstance(e, RuntimeError) and "inline_container" in text) and \
            not (type(e).__name__ == "SafetensorError" and "os error" in text.lower()):
        return None
    with contextlib.suppress(OSError):
        if shutil.disk_usage(folder).free < 1 << 20:
            return "disk full"
    return f"write failed: {text.splitlines()[0]}"


@contextlib.contextmanager
def _writing(tmp: Path, final: Path, what: str) -> Iterator[None]:
    """Turn a disk's write failure (full, read-only, ...) into one line, removing the partial folder."""
    try:
        yield
    except Exception as e:
        reason = write_failed(e, final.parent)
        if reason is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{final}: could not write {what} ({reason})") from None


def write_folder(final: Path, write: Callable[[Path], None]) -> Path:
    """Write a folder (e.g. final/ or an export) through `write(tmp)` under a temporary name, then `seal` it: the
    folder is complete or absent, never half-written."""
    tmp = final.with_name(f".tmp-{final.name}")
    with _writing(tmp, final, "the folder"):
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write(tmp)
        seal(tmp, final)
    return final


def save(ckpt_dir: Path, step: int, model: torch.nn.Module, optimizer, trainer: dict[str, Any],
         cfg: config_mod.Config, keep: int | None = None, protect: bool = False, sharded: bool = False) -> Path:
    """Write checkpoints/step_NNNNNNN atomically; then drop all but the newest `keep` (None keeps all).

    A protected checkpoint (the end of a growth stage) is never dropped by that rotation. With sharded=True every
    rank calls this (it is collective): each writes its shards, and rank 0 alone writes the rest and seals it. If the
    disk fills up, the partial folder is removed and a UserError says so: earlier checkpoints are untouched."""
    main = not sharded or dist.get_rank() == 0
    final = ckpt_dir / f"{PREFIX}{step:07d}"
    tmp = ckpt_dir / f".tmp-{PREFIX}{step:07d}"
    with _writing(tmp, final, "the checkpoint; earlier checkpoints are kept"):
        if main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / SHARDED if sharded else tmp).mkdir(parents=True)
        if sharded:
            dist.barrier()  # the folder exists before any rank writes into it
            _save_shards(tmp / SHARDED, model, optimizer)
            dist.barrier()  # every rank's shards are on disk before rank 0 seals the folder
            if not main:
                return final
        else:
            save_model(model, str(tmp / "model.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({**trainer, "rng": rng_state()}, tmp / "trainer.pt")
        config_mod.save(cfg, tmp / "config.yaml")
        if protect:
            (tmp / PROTECTED).write_text("end of a growth stage: kept by checkpoint rotation\n")
        seal(tmp, final)
    if keep is not None:
        rotating = [p for p in list_checkpoints(ckpt_dir) if not (p / PROTECTED).exists()]
        for old in rotating[:-keep]:
            shutil.rmtree(old)
    return final


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoint folders with their final name (written completely, not necessarily undamaged), oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


@dataclass
class Loaded:
    path: Path
    cfg: config_mod.Config
    trainer: dict[str, Any]
    optimizer: dict[str, Any] | None  # None for a sharded checkpoint (its optimizer state is in shards/)

    @property
    def sharded(self) -> bool:
        return self.optimizer is None


def read(path: Path) -> Loaded:
    """Verify a checkpoint against its manifest, then read its config, trainer and optimizer state (weights are
    loaded into a model by load_weights)."""
    if (path / LEGACY_SHARDED).is_dir():
        raise UserError(f"{path}: a torch.distributed.checkpoint folder (dcp/) from an older stackwise; its metadata "
                        "is a pickle, which could run code, so it is not read")
    verify(path)
    sharded = (path / SHARDED).is_dir()
    missing = [n for n in (SHARDED_FILES if sharded else FILES) if not (path / n).is_file()]
    if missing:
        raise UserError(f"{path}: incomplete checkpoint (missing {', '.join(missing)})")
    cfg = _read_file(path, "config.yaml", lambda p: config_mod.from_dict(yaml.safe_load(p.read_text())))
    trainer = _read_file(path, "trainer.pt", lambda p: torch.load(p, weights_only=True))
    optimizer = None if sharded else _read_file(path, "optimizer.pt", lambda p: torch.load(p, weights_only=True))
    if sharded:
        index = _read_file(path, f"{SHARDED}/index.json", _read_index)
        tensor_files = [f"{SHARDED}/rank{r:05d}.safetensors" for r in range(index["world_size"])]
    else:
        tensor_files = ["model.safetensors"]
    for name in tensor_files:  # their headers parse (the data is read when the weights are loaded)
        _read_file(path, name, _safetensors_keys)
    return Loaded(path, cfg, trainer, optimizer)


def _read_file(path: Path, name: str, reader: Callable[[Path], Any]) -> Any:
    try:
        return reader(path / name)
    except UserError:
        raise
    except Exception as e:
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise UserError(f"{path}: {name} is unreadable ({reason[:200]})") from None


def _safetensors_keys(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())  # noqa: SIM118 (safe_open is not a mapping)


def _read_index(path: Path) -> dict[str, Any]:
    index = json.loads(path.read_text())
    if not isinstance(index, dict) or index.get("format") != SHARDED_FORMAT or \
            not isinstance(index.get("world_size"), int) or index["world_size"] < 1:
        raise ValueError(f"not a {SHARDED_FORMAT} index")
    return index


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a checkpoint's weights (either format) into a plain model."""
    try:
        if (path / SHARDED).is_dir():
            _load_shards(model, None, path / SHARDED)
        else:
            load_model(model, str(path / "model.safetensors"), strict=True)
    except Exception as e:
        raise UserError(f"{path}: weights do not match the model ({type(e).__name__}: {e})") from None


def load_state(loaded: Loaded, model: torch.nn.Module, optimizer) -> None:
    """Load a checkpoint's weights and optimizer state into a plain model and its (new) optimizer."""
    if not loaded.sharded:
        load_weights(model, loaded.path)
        try:
            optimizer.load_state_dict(loaded.optimizer)
        except Exception as e:
            raise UserError(f"{loaded.path}: optimizer state does not match the model ({type(e).__name__}: {e})") \
                from None
        return
    try:
        _load_shards(model, optimizer, loaded.path / SHARDED)
    except Exception as e:
        raise UserError(f"{loaded.path}: state does not match the model ({type(e).__name__}: {e})") from None


def _save_shards(folder: Path, model: torch.nn.Module, optimizer) -> None:
    """This rank's pieces of the model and optimizer state, by name, into rankNNNNN.safetensors; the index by rank 0.

    Each piece records the global shape and offset of the tensor it belongs to (DTensor shards under FSDP2; a plain
    tensor, such as AdamW's step count, is written once, by rank 0)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    rank, world_size = dist.get_rank(), dist.get_world_size()
    flat = {f"model/{k}": v for k, v in get_model_state_dict(model).items()}
    optim_state = get_optimizer_state_dict(model, optimizer.optimizers)
    for fqn, state in optim_state["state"].items():
        for name, value in state.items():
            assert isinstance(value, torch.Tensor), f"optimizer state {fqn}.{name} is not a tensor"
            flat[f"optim/{fqn}/{name}"] = value
    tensors, layout = {}, {}
    for key, value in flat.items():
        if isinstance(value, DTensor):
            local = value.to_local()
            _, offset = compute_local_shape_and_global_offset(value.shape, value.device_mesh, value.placements)
        elif rank == 0:
            local, offset = value, (0,) * value.ndim
        else:
            continue
        if local.numel():
            tensors[key] = local.detach().to("cpu", copy=True).contiguous()
            layout[key] = {"shape": list(value.shape), "offset": [int(o) for o in offset]}
    save_file(tensors, str(folder / f"rank{rank:05d}.safetensors"), metadata={"layout": json.dumps(layout)})
    if rank == 0:
        groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
                  for g in optim_state["param_groups"]]
        index = {"format": SHARDED_FORMAT, "world_size": world_size, "tensors": sorted(flat), "param_groups": groups}
        (folder / "index.json").write_text(json.dumps(index) + "\n")


def _read_shards(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every tensor of a shards/ folder, whole, and its index."""
    index = _read_index(folder / "index.json")
    full: dict[str, torch.Tensor] = {}
    covered: dict[str, dict[tuple[int, ...], int]] = {}
    for rank in range(int(index["world_size"])):
        with safe_open(str(folder / f"rank{rank:05d}.safetensors"), framework="pt") as f:
            layout = json.loads(f.metadata()["layout"])
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                spec, local = layout[key], f.get_tensor(key)
                whole = full.setdefault(key, torch.empty(spec["shape"], dtype=local.dtype))
                where = tuple(slice(o, o + n) for o, n in zip(spec["offset"], local.shape, strict=True))
                whole[where].copy_(local)
                covered.setdefault(key, {})[tuple(spec["offset"])] = local.numel()
    for key in index["tensors"]:
        if key not in full or sum(covered[key].values()) != full[key].numel():
            raise ValueError(f"{key}: not every piece of it is in the shards")
    return full, index


def _load_shards(model: torch.nn.Module, optimizer, folder: Path) -> None:
    """Read shards/ into a plain model (and optimizer): each tensor whole, whatever the world size that wrote it."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    full, index = _read_shards(folder)
    expected = set(get_model_state_dict(model))
    weights = {k[len("model/"):]: v for k, v in full.items() if k.startswith("model/")}
    if set(weights) != expected:
        extra, missing = sorted(set(weights) - expected), sorted(expected - set(weights))
        raise ValueError(f"unexpected {extra[:3]}, missing {missing[:3]}")
    set_model_state_dict(model, weights)
    if optimizer is None:
        return
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in full.items():
        if key.startswith("optim/"):
            fqn, name = key[len("optim/"):].rsplit("/", 1)
            state.setdefault(fqn, {})[name] = value
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
              for g in index["param_groups"]]
    get_optimizer_state_dict(model, optimizer.optimizers)  # initialises the fresh optimizer's state, then overwritten
    set_optimizer_state_dict(model, optimizer.optimizers, {"state": state, "param_groups": groups})


def rewind(run_dir: Path, step: int) -> None:
    """Put a run back as it was right after writing its checkpoint of `step`: later checkpoints, final/ and
    result.json are removed, so `--resume` continues from that checkpoint."""
    assert (run_dir / "checkpoints" / f"{PREFIX}{step:07d}").is_dir(), f"no checkpoint of step {step}"
    for p in list_checkpoints(run_dir / "checkpoints"):
        if int(p.name[len(PREFIX):]) > step:
            shutil.rmtree(p)
    shutil.rmtree(run_dir / "final", ignore_errors=True)
    (run_dir / "result.json").unlink(missing_ok=True)


def latest(run_dir: Path, warn=print) -> Loaded:
    """The newest checkpoint of a run that verifies and reads; a damaged newer one is skipped with a warning."""
    ckpts = list_checkpoints(run_dir / "checkpoints")
    if not ckpts:
        raise UserError(f"no checkpoint in {run_dir / 'checkpoints'}")
    for i, path in enumerate(reversed(ckpts)):
        try:
            return read(path)
        except UserError as e:
            older = ckpts[-i - 2].name if i + 1 < len(ckpts) else None
            warn(f"skipping damaged checkpoint: {e}" + (f"; trying {older}" if older else ""))
    raise UserError(f"no readable checkpoint in {run_dir / 'checkpoints'}")
