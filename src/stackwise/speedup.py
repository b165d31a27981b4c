"""Speedup arithmetic on validation curves: iso-loss and compute-equivalent speedups.

A curve is the (cost, val_loss) pairs at a run's evaluation points, cost being cumulative FLOPs or training seconds.
Reaching a loss means the first crossing of the curve below it, linearly interpolated between evaluation points.

- iso-loss speedup: the baseline's cost to reach its own final loss ÷ the method's cost to reach that same loss;
  when the method never gets there, None with the remaining gap (method's best loss − target).
- compute-equivalent speedup: the baseline's cost to reach the method's final loss ÷ the method's total cost;
  defined whenever the baseline's curve reaches that loss (else None).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def cost_to_reach(costs: Sequence[float], losses: Sequence[float], target: float) -> float | None:
    """Cost at which the curve first gets down to `target` (linear interpolation), or None if it never does."""
    assert len(costs) == len(losses) and len(costs) > 0
    if losses[0] <= target:
        return float(costs[0])
    for i in range(1, len(losses)):
        if losses[i] <= target:
            c0, c1, l0, l1 = costs[i - 1], costs[i], losses[i - 1], losses[i]
            return float(c0 + (c1 - c0) * (l0 - target) / (l0 - l1))
    return None


def iso_loss_speedup(base_costs, base_losses, costs, losses) -> tuple[float | None, float]:
    """(speedup or None, gap): gap is 0 when reached, else how far above the baseline's final loss the method ends."""
    target = base_losses[-1]
    base_cost = cost_to_reach(base_costs, base_losses, target)
    cost = cost_to_reach(costs, losses, target)
    if cost is None:
        return None, float(min(losses) - target)
    if math.isnan(cost) or math.isnan(base_cost):  # costs not known (calibrated time before calibration)
        return None, 0.0
    return float(base_cost / cost) if cost > 0 else float("inf"), 0.0


def compute_equivalent_speedup(base_costs, base_losses, costs, losses) -> float | None:
    base_cost = cost_to_reach(base_costs, base_losses, losses[-1])
    if base_cost is None or math.isnan(base_cost) or math.isnan(costs[-1]):
        return None
    return float(base_cost / costs[-1])
