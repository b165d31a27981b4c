"""Device choice and the wrappers applied to the model from outside: per-block torch.compile (DDP/FSDP2 later).

The model file knows nothing of these; `wrap` returns the module the training step calls, while the plain model
(whose parameters the optimizer holds and checkpoints store) stays reachable. After growth, wrap again.
"""

from __future__ import annotations

import torch
from torch import nn

from stackwise.config import Config
from stackwise.errors import UserError


def device_for(cfg: Config) -> torch.device:
    want = cfg.train.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device: cuda requested but no CUDA device is available")
    return torch.device(want)


def configure_backend(device: torch.device) -> None:
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormals make the first CPU steps ~10x slower
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def unwrap(model: nn.Module) -> nn.Module:
    """Undo `wrap` before the layer list changes (a deep-copied compiled block would call its source's code)."""
    for block in model.layers:
        block._compiled_call_impl = None
    return model


def wrap(model: nn.Module, cfg: Config) -> nn.Module:
    """Compile each block in place (state-dict names unchanged), as torchtitan does."""
    if cfg.train.compile:
        for block in model.layers:
            block.compile()
    return model
