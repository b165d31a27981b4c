"""Optional TensorBoard event files beside metrics.jsonl (`--log.tensorboard true`; `pip install -e ".[tensorboard]"`),
so runs show up in the tool people already use: `tensorboard --logdir runs/`.

Every metrics record becomes scalars at its step (train/*, and val/loss at evaluations), every growth event a
growth/depth scalar. On resume, events past the resumed step are purged (SummaryWriter's purge_step), so the curves
read as if the run had never stopped, as metrics.jsonl does. metrics.jsonl stays the source of truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stackwise.errors import UserError


class TensorBoardLog:
    def __init__(self, out: Path, purge_from: int | None):
        """purge_from: on resume, the first step whose events (from before the interruption) are dropped."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError('log.tensorboard: needs the optional extra: pip install -e ".[tensorboard]"') from None
        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"), purge_step=purge_from)

    def write(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl record: its numbers as scalars at its step (val_loss as val/loss)."""
        step = record["step"]
        for key, value in record.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            self.writer.add_scalar("val/loss" if key == "val_loss" else f"train/{key}", value, step)

    def event(self, step: int, depth: int) -> None:
        self.writer.add_scalar("growth/depth", depth, step)

    def close(self) -> None:
        self.writer.close()
