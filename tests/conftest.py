"""Shared fixtures: a small synthetic corpus on disk, a per-session cache, and a tiny config."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from stackwise import config as config_mod

torch.set_flush_denormal(True)

WORDS = ("the cat dog sat on a mat and ran to house big small red blue green tree under over it was "
         "she he saw her him with of in").split()


def _text(rng: random.Random, lines: int) -> str:
    return "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))) + "." for _ in range(lines))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    (root / "train.txt").write_text(_text(rng, 4000))
    (root / "val.txt").write_text(_text(rng, 400))
    return {"train": root / "train.txt", "val": root / "val.txt"}


@pytest.fixture(autouse=True, scope="session")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("STACKWISE_CACHE", str(path))
    yield path
    mp.undo()


TINY = {
    "model.n_layers": 2, "model.d_model": 32, "model.n_heads": 2, "model.vocab_size": 300,
    "train.steps": 12, "train.batch_size": 4, "train.seq_len": 32, "train.warmup_steps": 2, "train.lr": 3e-3,
    "train.log_every": 1, "eval.every": 4, "eval.batches": 2, "eval.sample_tokens": 4,
}


@pytest.fixture
def tiny_cfg(corpus):
    def make(**overrides) -> config_mod.Config:
        values = {**TINY, "data.train": str(corpus["train"]), "data.val": str(corpus["val"])}
        values.update({k.replace("__", "."): v for k, v in overrides.items()})
        return config_mod.load(None, values)
    return make
