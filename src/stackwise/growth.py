"""Depth growth: operators as pure functions, PROP-α stage plans, and FLOPs-speedup accounting.

An operator maps the current depth d and block size b to a *source map*: for each layer of the grown model, the
index of the old layer it starts from (DESIGN.md §1). `grow_layers` applies a map to a list of layers. Registering an
operator is one function:

    @operator("mine")
    def mine(depth: int, b: int) -> list[int]: ...

A stage plan lists (depth, start_step, end_step) per stage; the trainer grows the model when a stage starts deeper
than the model is. `growth.method: none` is the one-stage plan of the baseline.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from stackwise.config import Config
from stackwise.errors import UserError
from stackwise.flops import flops_per_token
from stackwise.model import OUTPUT_PROJECTIONS, init_block

OPERATORS: dict[str, Callable[[int, int], list[int]]] = {}


def operator(name: str):
    def register(fn: Callable[[int, int], list[int]]):
        OPERATORS[name] = fn
        return fn
    return register


@operator("midas")
def midas(depth: int, b: int) -> list[int]:
    """Duplicate block j = ceil(n/2) (the lower middle when n is even); the copy goes right after it."""
    n = depth // b
    start = (math.ceil(n / 2) - 1) * b
    return [*range(start + b), *range(start, start + b), *range(start + b, depth)]


@operator("lidas")
def lidas(depth: int, b: int) -> list[int]:
    """Copy the b layers centred on the middle layer: lo = ceil(d/2) - ceil(b/2); the copy goes right after them."""
    lo = math.ceil(depth / 2) - math.ceil(b / 2)
    return [*range(lo + b), *range(lo, lo + b), *range(lo + b, depth)]


@operator("gradstack")
def gradstack(depth: int, b: int) -> list[int]:
    """Copy the last b layers on top."""
    return [*range(depth), *range(depth - b, depth)]


@operator("progressive")
def progressive(depth: int, b: int) -> list[int]:
    """Stack the whole model on itself: f ∘ f (b is unused)."""
    return [*range(depth), *range(depth)]


def new_positions(source_map: list[int]) -> list[int]:
    """Positions whose source already appeared earlier: the copies (the first occurrence keeps the original layer)."""
    seen, new = set(), []
    for i, s in enumerate(source_map):
        if s in seen:
            new.append(i)
        seen.add(s)
    return new


def grow_layers(layers: list[nn.Module], source_map: list[int], init: str, std: float,
                n_layers: int) -> list[nn.Module]:
    """The grown list: first occurrences keep the old layer objects, copies are deep copies, then `init` applies.

    init: copy (as published) | random (fresh init, same positions) | identity (copy with zeroed output
    projections: the grown model computes the same function). Every layer's `layer_idx` is renumbered.
    """
    assert all(0 <= s < len(layers) for s in source_map)
    copies = set(new_positions(source_map))
    out = [copy.deepcopy(layers[s]) if i in copies else layers[s] for i, s in enumerate(source_map)]
    for i in copies:
        if init == "random":
            init_block(out[i], std, n_layers)
        elif init == "identity":
            for name, p in out[i].named_parameters():
                if any(name.startswith(o) for o in OUTPUT_PROJECTIONS):
                    nn.init.zeros_(p)
        else:
            assert init == "copy", init
    for i, layer in enumerate(out):
        layer.layer_idx = i
    return out


@dataclass(frozen=True)
class Stage:
    index: int  # 1-based
    depth: int
    start_step: int
    end_step: int  # exclusive
    source_layers: tuple[int, ...] | None  # how this stage's model comes from the previous stage's; None for stage 1

    @property
    def steps(self) -> int:
        return self.end_step - self.start_step


def boundaries(total_steps: int, weights: list[float]) -> list[int]:
    """Cumulative-floor boundaries B_0 = 0 < … < B_k = T for stage shares proportional to `weights`."""
    total = sum(weights)
    out, acc = [0], 0.0
    for w in weights[:-1]:
        acc += w
        out.append(math.floor(total_steps * acc / total))
    return [*out, total_steps]


def stage_depths(cfg: Config) -> list[int]:
    g, L = cfg.growth, cfg.model.n_layers
    if g.method == "none":
        return [L]
    if g.method == "progressive":
        start = g.start_layers or g.block_size
        depths = [start]
        while depths[-1] < L:
            depths.append(depths[-1] * 2)
        return depths
    return [i * g.block_size for i in range(1, L // g.block_size + 1)]


def plan(cfg: Config) -> list[Stage]:
    """The stages of a run: depth and [start, end) steps, with PROP-α or explicit fractions (validated config)."""
    depths = stage_depths(cfg)
    k, g = len(depths), cfg.growth
    weights = list(g.stage_fractions) if g.stage_fractions else [i ** g.alpha for i in range(1, k + 1)]
    bounds = boundaries(cfg.train.steps, weights)
    stages, prev = [], None
    for i, depth in enumerate(depths):
        src = None if prev is None else tuple(OPERATORS[g.method](prev, g.block_size))
        assert src is None or len(src) == depth
        stages.append(Stage(i + 1, depth, bounds[i], bounds[i + 1], src))
        prev = depth
    return stages


def stage_at(stages: list[Stage], step: int) -> Stage:
    """The stage that runs optimizer step `step` (0-indexed)."""
    for stage in stages:
        if step < stage.end_step:
            return stage
    return stages[-1]


def speedup(cfg: Config, stages: list[Stage]) -> dict[str, float]:
    """Predicted speedup vs the full-depth baseline over the same steps: layer-FLOPs and total-FLOPs."""
    L, T = cfg.model.n_layers, cfg.train.steps
    layer = T * L / sum(s.steps * s.depth for s in stages)
    per_token = lambda d: flops_per_token(cfg.model, d, cfg.train.seq_len)  # noqa: E731
    total = T * per_token(L) / sum(s.steps * per_token(s.depth) for s in stages)
    return {"layer_flops": layer, "total_flops": total}


def validate(cfg: Config) -> None:
    """Growth-specific checks, each a one-line UserError naming the field."""
    g, L, T = cfg.growth, cfg.model.n_layers, cfg.train.steps
    if g.method == "none":
        return
    if g.block_size < 1:
        raise UserError("growth.block_size: must be positive")
    if g.alpha < 0:
        raise UserError("growth.alpha: must be >= 0")
    if g.method == "progressive":
        start = g.start_layers or g.block_size
        if start < 1 or L % start or (L // start) & (L // start - 1):
            raise UserError(f"growth.start_layers: {start} doubled never reaches model.n_layers {L} exactly")
    elif L % g.block_size:
        raise UserError(f"growth.block_size: {g.block_size} does not divide model.n_layers {L}")
    k = len(stage_depths(cfg))
    if g.stage_fractions is not None:
        if len(g.stage_fractions) != k:
            raise UserError(f"growth.stage_fractions: {len(g.stage_fractions)} values for {k} stages")
        if any(f <= 0 for f in g.stage_fractions) or abs(sum(g.stage_fractions) - 1) > 1e-6:
            raise UserError("growth.stage_fractions: must be positive and sum to 1")
    if any(s.steps < 1 for s in plan(cfg)):
        raise UserError(f"train.steps: {T} steps leave an empty stage among {k} stages; use more steps")
