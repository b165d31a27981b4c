"""Growth-event telemetry: how much a growth event costs in training loss, and how long it takes to recover.

A grown run's own loss usually still falls across a growth event (the loss falls fast early), so a plain
before/after difference hides a jump. The trend is what matters: before each event, a least-squares line of the
train loss against log(step + 1) is fitted over the last `window` steps, and extrapolated past the event.

- `loss_jump`: the mean train loss of the first `after` steps from the event, minus the mean the trend predicts for
  them (positive: the event cost loss).
- `recovery_steps`: the smallest n such that the mean loss of steps [event + n, event + n + after) is at or below the
  trend's mean over the same steps: the steps until the loss is back on its pre-event trend. It is filled in once
  known; `null` with `"recovered": false` when the run ended (or the next event came) first.

The tracker holds plain numbers only, so it is saved in checkpoints and a resumed run reports the same figures.
"""

from __future__ import annotations

import math
from typing import Any


def fit_trend(steps: list[int], losses: list[float]) -> tuple[float, float] | None:
    """(intercept, slope) of loss ≈ a + b·log(step + 1), least squares; None with fewer than 4 points."""
    if len(steps) < 4:
        return None
    xs = [math.log(s + 1) for s in steps]
    mx, my = sum(xs) / len(xs), sum(losses) / len(losses)
    var = sum((x - mx) ** 2 for x in xs)
    slope = 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, losses, strict=True)) / var
    return my - slope * mx, slope


def predict(trend: tuple[float, float], step: int) -> float:
    return trend[0] + trend[1] * math.log(step + 1)


class GrowthTelemetry:
    def __init__(self, window: int = 32, after: int = 8):
        self.window, self.after = window, after
        self.history: list[tuple[int, float]] = []  # the last `window` (step, loss) before now
        self.open: list[dict[str, Any]] = []  # events whose jump or recovery is not known yet

    def event(self, step: int) -> list[dict[str, Any]]:
        """A growth event happens before optimizer step `step`: fit the trend on the steps before it. Returns the
        updates of earlier events that this one closes (a new event ends the search for their recovery)."""
        updates = self.close_all()
        trend = fit_trend([s for s, _ in self.history], [v for _, v in self.history])
        if trend is not None:
            self.open.append({"step": step, "trend": list(trend), "losses": [], "jump": None})
        return updates

    def record(self, step: int, loss: float) -> list[dict[str, Any]]:
        """Note step's train loss; returns the updates now known, each {"step": event step, field: value, ...}."""
        self.history = [*self.history, (step, loss)][-self.window:]
        updates = []
        for ev in self.open:
            ev["losses"].append(loss)
            ev["losses"] = ev["losses"][-self.after:] if ev["jump"] is not None else ev["losses"]
            trend = tuple(ev["trend"])
            n_seen = step - ev["step"] + 1
            if ev["jump"] is None and n_seen == self.after:
                predicted = sum(predict(trend, ev["step"] + i) for i in range(self.after)) / self.after
                ev["jump"] = sum(ev["losses"]) / self.after - predicted
                updates.append({"step": ev["step"], "loss_jump": ev["jump"]})
            if ev["jump"] is not None and len(ev["losses"]) == self.after:
                start = step - self.after + 1
                predicted = sum(predict(trend, start + i) for i in range(self.after)) / self.after
                if sum(ev["losses"]) / self.after <= predicted:
                    ev["done"] = True
                    updates.append({"step": ev["step"], "recovery_steps": start - ev["step"], "recovered": True})
        self.open = [ev for ev in self.open if not ev.get("done")]
        return updates

    def close_all(self) -> list[dict[str, Any]]:
        """End the search for every open event (at the next event or the end of the run): not recovered."""
        updates = [{"step": ev["step"], "recovery_steps": None, "recovered": False} for ev in self.open
                   if ev["jump"] is not None]
        self.open = []
        return updates

    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(x) for x in self.history], "open": [dict(ev) for ev in self.open]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [tuple(x) for x in state["history"]]
        self.open = [dict(ev) for ev in state["open"]]
