"""Growth-event telemetry: the loss jump against the pre-event trend and the steps to recover, by hand-computable
cases, and in a real run (identical after a resume)."""

from __future__ import annotations

import json
import math

import pytest
from rich.console import Console

from stackwise import checkpoint
from stackwise.telemetry import GrowthTelemetry, fit_trend
from stackwise.train import train


def _trend(step: int) -> float:
    return 6.0 - 0.5 * math.log(step + 1)


def test_trend_fit_recovers_a_log_linear_curve():
    steps = list(range(10, 40))
    a, b = fit_trend(steps, [_trend(s) for s in steps])
    assert (a, b) == (pytest.approx(6.0), pytest.approx(-0.5))
    assert fit_trend([1, 2, 3], [1.0, 1.0, 1.0]) is None


def test_jump_and_recovery_known_answers():
    t = GrowthTelemetry(window=32, after=8)
    updates = []
    for step in range(40):
        updates += t.record(step, _trend(step))
    assert t.event(40) == [] and updates == []
    for step in range(40, 60):  # on the trend plus 0.5 - 0.1·(step - 40): back on it once the window's mean is <= 0
        updates += t.record(step, _trend(step) + 0.5 - 0.1 * (step - 40))
    jump = sum(0.5 - 0.1 * i for i in range(8)) / 8  # 0.15
    assert updates[0] == {"step": 40, "loss_jump": pytest.approx(jump)}
    assert updates[1] == {"step": 40, "recovery_steps": 2, "recovered": True}  # 0.5 - 0.1·(n + 3.5) <= 0 at n = 2
    assert len(updates) == 2 and t.open == []


def test_an_event_that_never_recovers_is_closed_as_such():
    t = GrowthTelemetry(window=16, after=4)
    for step in range(20):
        t.record(step, _trend(step))
    t.event(20)
    updates = [u for step in range(20, 30) for u in t.record(step, _trend(step) + 0.3)]
    assert updates == [{"step": 20, "loss_jump": pytest.approx(0.3)}]
    assert t.event(30) == [{"step": 20, "recovery_steps": None, "recovered": False}]  # the next event closes it
    saved = t.state_dict()
    again = GrowthTelemetry(window=16, after=4)
    again.load_state_dict(saved)
    assert again.state_dict() == saved


def test_a_grown_run_records_jump_and_recovery_and_resumes_to_the_same_figures(tiny_cfg, tmp_path):
    cfg = tiny_cfg(model__n_layers=2, growth__method="midas", growth__block_size=1, train__steps=40,
                   eval__every=20, checkpoint__every=5, checkpoint__keep=10, eval__sample_tokens=0,
                   log__tensorboard=True)
    run = tmp_path / "run"
    train(cfg, run, console=Console(quiet=True))
    before = _tensorboard(run)
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events] == [13]  # PROP-1 over 40 steps: floor(40/3)
    (event,) = events
    assert isinstance(event["loss_jump"], float)
    assert event["recovered"] is (event["recovery_steps"] is not None)
    checkpoint.rewind(run, 10)  # before the event, and before its figures were known
    train(cfg, run, resume=True, console=Console(quiet=True))
    assert [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()] == \
        [{**event, "seconds": json.loads((run / "events.jsonl").read_text())["seconds"]}]
    # TensorBoard (log.tensorboard): the metrics read back from the event files, one value per step after the resume
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    after = _tensorboard(run)
    assert [s for s, _ in after["train/train_loss"]] == [m["step"] for m in metrics]
    assert [v for _, v in after["train/train_loss"]] == pytest.approx([m["train_loss"] for m in metrics], rel=1e-6)
    assert [s for s, _ in after["val/loss"]] == [20, 40] and after["growth/depth"] == [(13, 2.0)]
    assert after["train/train_loss"][:10] == before["train/train_loss"][:10]


def _tensorboard(run) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
