"""A mix per stage of training (data.stages) and the generator's kinds selection (synthetic:SEED:MB:KINDS)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math

import numpy as np
import pytest

from stackwise import config as config_mod
from stackwise import data as data_mod
from stackwise.data import sources, synthetic
from stackwise.data.loader import TrainLoader
from stackwise.errors import UserError


def _kind(doc: str) -> str:
    if doc.startswith("Words:"):
        return "repeat"
    if "Question:\n" in doc:
        return "quiz"
    return "program" if doc.startswith(">>>") or "print(" in doc else "other"


def test_the_generator_writes_only_the_kinds_asked_for():
    docs = list(itertools.islice(sources.documents("synthetic:0:16:repeat+program", "train"), 2000))
    kinds = [_kind(d) for d in docs]
    assert set(kinds) == {"repeat", "program"}
    w = dict(zip(synthetic.KIND_NAMES, synthetic.WEIGHTS))  # in their usual proportions to each other
    assert kinds.count("repeat") / len(kinds) == pytest.approx(w["repeat"] / (w["repeat"] + w["program"]), abs=0.03)
    quizzes = list(itertools.islice(sources.documents("synthetic:0:16:quiz", "train"), 200))
    assert {_kind(d) for d in quizzes} == {"quiz"}
    # one text whatever the order the kinds are named in; seeded; another text than the full generator's
    assert quizzes == list(itertools.islice(sources.documents("synthetic:0:16:quiz", "train"), 200))
    assert docs[:50] == list(itertools.islice(sources.documents("synthetic:0:16:program+repeat", "train"), 50))
    assert sources.fingerprint("synthetic:0:16:quiz", "train") != sources.fingerprint("synthetic:0:16", "train")


def test_the_full_generators_fingerprint_is_unchanged_by_the_kinds_field():
    # runs that trained before kinds existed keep their data fingerprint (data.json), so they resume and are reused
    old = hashlib.sha256(f"train|text|{synthetic.VERSION}|(3, 16.0)".encode()).hexdigest()[:16]
    assert sources.fingerprint("synthetic:3", "train") == old


@pytest.mark.parametrize("spec", ["synthetic:0:16:poems", "synthetic:0:16:quiz+quiz", "synthetic:0:16:",
                                  "synthetic:0:16:quiz:x", "synthetic:0:-1"])
def test_a_bad_synthetic_spec_is_one_line(spec):
    bad = r"^data\.train: .* is not synthetic\[:SEED\[:MB\[:KINDS\]\]\] .*quiz, exam, aliases, small_aliases\)$"
    with pytest.raises(UserError, match=bad):
        list(itertools.islice(sources.documents(spec, "train"), 1))


def test_stages_parse_and_bad_ones_are_one_line():
    assert config_mod.parse_stages("0=bundled:1; 20=bundled:0.5,synthetic:0.5") == [
        (0, "bundled:1"), (20, "bundled:0.5,synthetic:0.5")]
    for stages, why in [("bundled:1", "is not STEP=MIX"), ("0=bundled", "stage from step 0.*SOURCE:WEIGHT"),
                        ("5=bundled:1", "must start at step 0"), ("0=bundled:1;9=bundled:1;9=synthetic:1",
                                                                  "increasing"),
                        ("0=bundled:1;x=bundled:1", "is not STEP=MIX")]:
        with pytest.raises(UserError, match=rf"^data\.stages.*{why}"):
            config_mod.load("tiny", {"data.stages": stages})
    with pytest.raises(UserError, match=r"^data\.stages: the stage from step 500 would never train \(train\.steps"):
        config_mod.load("tiny", {"data.stages": "0=bundled:1;500=synthetic:1", "train.steps": 500})
    with pytest.raises(UserError, match=r"^data\.mix: would be ignored: data\.stages is set"):
        config_mod.load("tiny", {"data.mix": "bundled:0.5,synthetic:0.5", "data.stages": "0=bundled:1"})
    with pytest.raises(UserError, match=r"^data\.mix: would be ignored: data\.stages is set"):
        config_mod.load("reasoning", {"data.mix": "bundled:0.5,synthetic:0.5"})  # a recipe with stages
    with pytest.raises(UserError, match=r"^data\.train: synthetic would be ignored: data\.stages is set"):
        config_mod.load("tiny", {"data.stages": "0=bundled:1", "data.train": "synthetic"})


def test_the_loader_draws_each_batch_from_its_stage_and_resumes_exactly():
    a, b = np.full(5000, 1, dtype=np.uint32), np.full(3000, 2, dtype=np.uint32)
    a[::7] = 3  # (not constant, so that windows differ)
    loader = TrainLoader([(0, a), (4, b)], batch_size=4, seq_len=16, seed=0)
    batches = [loader.next() for _ in range(8)]
    assert all(set(x.unique().tolist()) <= {1, 3} for x, _ in batches[:4])  # steps 0-3: the first stage
    assert all(set(x.unique().tolist()) == {2} for x, _ in batches[4:])  # from step 4: the second
    # batch p is a pure function of (seed, p): a loader resumed at step 3 (across the switch) draws the same
    resumed = TrainLoader([(0, a), (4, b)], batch_size=4, seq_len=16, seed=0)
    resumed.load_state_dict({"position": 3, "seed": 0})
    for x, y in batches[3:]:
        rx, ry = resumed.next()
        assert torch_equal(rx, x) and torch_equal(ry, y)
    # one stage is the plain loader: the same batches as a single array
    single, staged = TrainLoader(a, 4, 16, 1), TrainLoader([(0, a)], 4, 16, 1)
    assert all(torch_equal(single.next()[0], staged.next()[0]) for _ in range(3))


def torch_equal(x, y) -> bool:
    return bool((x == y).all())


def _jsonl(path, docs):
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return str(path)


def test_a_staged_run_prepares_a_token_file_per_stage_and_trains_across_the_switch(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("STACKWISE_CACHE", str(tmp_path / "cache"))
    first = _jsonl(tmp_path / "first.jsonl", [f"apples and pears number {i} " * 3 for i in range(400)])
    second = _jsonl(tmp_path / "second.jsonl", [f"zebra quartz vexing {i} " * 3 for i in range(400)])
    cfg = tiny_cfg(data__train="bundled", data__stages=f"0={first}:1;3={first}:0.5,{second}:0.5",
                   train__steps=6)
    assert data_mod.train_stages(cfg) == [(0, f"mix:{first}:1"), (3, f"mix:{first}:0.5,{second}:0.5")]
    prepared = data_mod.prepare(cfg, log=lambda *_: None)
    (s0, early), (s1, late) = prepared.train_stages
    assert (s0, s1) == (0, 3) and prepared.train is early
    decode = prepared.tokenizer.decode
    assert "zebra" not in decode(early.tolist()) and "zebra" in decode(late.tolist())
    assert "zebra" in "".join(itertools.islice(sources.documents(data_mod.train_source(cfg), "train"), 4))  # the
    # tokenizer trains on every stage's text
    # the run's data identity covers the stages: another switch step is another training text
    other = tiny_cfg(data__train="bundled", data__stages=f"0={first}:1;4={first}:0.5,{second}:0.5", train__steps=6)
    assert data_mod.identity(cfg)["train"] != data_mod.identity(other)["train"]

    from rich.console import Console

    from stackwise import train as train_mod

    drawn = []

    class Recording(TrainLoader):
        def next(self):
            drawn.append(np.array_equal(self.tokens(self.position), late))
            return super().next()

    monkeypatch.setattr(train_mod, "TrainLoader", Recording)
    result = train_mod.train(cfg, tmp_path / "run", console=Console(quiet=True))
    assert result.steps == 6 and math.isfinite(result.final_val_loss)  # trained across the switch to the end
    assert drawn == [False] * 3 + [True] * 3  # the training loop draws from each stage in its steps
