"""Deterministic, resumable sampling of (batch, seq_len) training windows and a fixed validation set.

Training batch number p is a pure function of (seed, p): its window starts are drawn from a generator seeded with
both. The loader's state is therefore just its position, which checkpoints store; a resumed run draws exactly the
batches an uninterrupted run would. Ranks (later) take disjoint slices of the same global batch.
"""

from __future__ import annotations

import numpy as np
import torch


def windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets, each (len(starts), seq_len) int64."""
    block = np.stack([np.asarray(tokens[s:s + seq_len + 1], dtype=np.int64) for s in starts])
    block = torch.from_numpy(block)
    return block[:, :-1], block[:, 1:]


class TrainLoader:
    """Global batch p, of `batch_size` windows, is drawn from seed (seed, p); rank r of `world` gets its r-th
    contiguous slice, so N processes together see exactly the batches one process would.

    `tokens` is one array, or the data stages as [(first batch, array)] (data.stages: batch p is drawn from the
    last stage that starts at or before p)."""

    def __init__(self, tokens: np.ndarray | list[tuple[int, np.ndarray]], batch_size: int, seq_len: int, seed: int,
                 rank: int = 0, world: int = 1):
        self.stages = tokens if isinstance(tokens, list) else [(0, tokens)]
        assert self.stages[0][0] == 0 and all(a < b for (a, _), (b, _) in zip(self.stages, self.stages[1:])), \
            "stages start at batch 0, in increasing order"
        assert all(len(t) > seq_len + 1 for _, t in self.stages), "corpus shorter than one window"
        assert batch_size % world == 0, "the global batch must split evenly across ranks"
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.rank, self.world = rank, world
        self.position = 0  # number of global batches drawn so far

    def tokens(self, position: int) -> np.ndarray:
        """The token ids batch `position` is drawn from: its stage's."""
        return next(t for start, t in reversed(self.stages) if start <= position)

    def starts(self, position: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, position])
        return rng.integers(0, len(self.tokens(position)) - self.seq_len - 1, size=self.batch_size)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of the next global batch: inputs and targets, (batch_size / world, seq_len)."""
        per_rank = self.batch_size // self.world
        starts = self.starts(self.position)[self.rank * per_rank:(self.rank + 1) * per_rank]
        batch = windows(self.tokens(self.position), starts, self.seq_len)
        self.position += 1
        return batch

    def state_dict(self) -> dict:
        return {"position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        assert state["seed"] == self.seed, "resuming with a different data seed"
        self.position = int(state["position"])


def val_batches(tokens: np.ndarray, n_batches: int, batch_size: int, seq_len: int):
    """A fixed validation set: n_batches × batch_size windows spread evenly over the validation text."""
    n = n_batches * batch_size
    last = len(tokens) - seq_len - 1
    assert last >= 0, "validation text shorter than one window"
    starts = np.linspace(0, last, num=n).astype(np.int64)
    return [windows(tokens, starts[i:i + batch_size], seq_len) for i in range(0, n, batch_size)]
