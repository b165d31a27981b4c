"""Depth growth as a plan: stages (depth, steps, source map) from the registry of growth methods, PROP-α stage
lengths, and FLOPs-speedup accounting. No torch: `stackwise plan`, the config and reports use it without it.

Growth methods are defined in operators.py (one function each, registered with `@operator`; re-exported here). A
stage plan lists (depth, start_step, end_step, source map) per stage; the trainer grows the model when a stage starts
deeper than the model is (grow.py applies a source map to a model's layers). `growth.method: none` is the one-stage
plan of the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from stackwise.errors import UserError
from stackwise.flops import flops_per_token
from stackwise.operators import (  # noqa: F401 (the registry, re-exported)
    BASELINE,
    OPERATORS,
    Operator,
    gradstack,
    lidas,
    methods,
    midas,
    operator,
    progressive,
    stage_bounds,
    stage_depths,
)

if TYPE_CHECKING:
    from stackwise.config import Config


def new_positions(source_map: list[int]) -> list[int]:
    """Positions whose source already appeared earlier: the copies (the first occurrence keeps the original layer)."""
    seen, new = set(), []
    for i, s in enumerate(source_map):
        if s in seen:
            new.append(i)
        seen.add(s)
    return new


def original_positions(stages: list[Stage]) -> list[set[int]]:
    """Per stage, the positions of the layers the model had before its first growth event, followed through each
    source map (kept or moved, never a copy): what growth.freeze_old keeps frozen (LLaMA Pro). A function of the
    plan alone, so a resumed run freezes exactly what the uninterrupted one did."""
    out = [set(range(stages[0].depth))]
    for s in stages[1:]:
        src = list(s.source_layers)
        copies = set(new_positions(src))
        out.append({i for i, j in enumerate(src) if i not in copies and j in out[-1]})
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


def plan(cfg: Config) -> list[Stage]:
    """The stages of a run: depth, [start, end) steps (PROP-α or explicit fractions) and each stage's source map."""
    g = cfg.growth
    depths = stage_depths(g.method, cfg.model.n_layers, g.block_size, g.start_layers)
    bounds = stage_bounds(cfg.train.steps, len(depths), g.alpha, g.stage_fractions)
    stages, prev = [], None
    for i, depth in enumerate(depths):
        src = None if prev is None else tuple(OPERATORS[g.method].source_map(prev, g.block_size))
        if src is not None and (len(src) != depth or not all(0 <= s < prev for s in src)):
            raise UserError(f"growth.method: operator '{g.method}' maps depth {prev} to {len(src)} layers drawn from "
                            f"{sorted(set(src))}, but its schedule's next depth is {depth}")
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
