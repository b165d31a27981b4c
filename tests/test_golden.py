"""Refactor guard (torchtitan's rule): the tiny recipes log bit-identical numbers before and after a change to the
training loop, growth and resume included. The stored numbers are tests/golden/losses.json; after a change that is
*meant* to change the numbers, regenerate them with `python tests/test_golden.py` and say why in the commit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from rich.console import Console

from stackwise import checkpoint
from stackwise import config as config_mod
from stackwise.train import train

GOLDEN = Path(__file__).parent / "golden" / "losses.json"
BASE = {"model.n_layers": 3, "model.d_model": 32, "model.n_heads": 2, "model.vocab_size": 300, "train.steps": 12,
        "train.batch_size": 4, "train.seq_len": 32, "train.warmup_steps": 2, "train.log_every": 1, "eval.every": 4,
        "eval.batches": 2, "eval.sample_tokens": 0, "checkpoint.every": 3, "checkpoint.keep": 10}
RECIPES = {
    "baseline": {},
    "midas": {"growth.method": "midas", "growth.block_size": 1},
    "gradstack-identity-reset-new-accum": {"growth.method": "gradstack", "growth.block_size": 1,
                                           "growth.init": "identity", "growth.optimizer_state": "reset-new",
                                           "train.grad_accum": 2, "growth.rewarmup_steps": 2},
    "progressive-muon": {"model.n_layers": 4, "growth.method": "progressive", "growth.block_size": 1,
                         "optim.name": "muon", "train.lr": 0.01},
    "lidas-random-alpha2": {"model.n_layers": 4, "growth.method": "lidas", "growth.block_size": 2, "growth.alpha": 2,
                            "growth.init": "random", "growth.optimizer_state": "reset-all"},
}
RESUME_FROM = {"midas": 3, "progressive-muon": 6}  # checkpoints before a growth event and between two


def _numbers(run: Path) -> list[list]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [[r["step"], r["depth"], r["lr"], r["train_loss"], r["grad_norm"], r.get("val_loss")] for r in rows]


def run_all(corpus: dict[str, Path], tmp: Path) -> dict[str, list[list]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for name, extra in RECIPES.items():
            cfg = config_mod.load(None, {**BASE, **extra, "data.train": str(corpus["train"]),
                                         "data.val": str(corpus["val"])})
            train(cfg, tmp / name, console=Console(quiet=True))
            out[name] = _numbers(tmp / name)
            if name in RESUME_FROM:
                checkpoint.rewind(tmp / name, RESUME_FROM[name])
                train(cfg, tmp / name, resume=True, console=Console(quiet=True))
                out[f"{name} resumed from step {RESUME_FROM[name]}"] = _numbers(tmp / name)
        return out
    finally:
        torch.set_num_threads(threads)


def test_logged_numbers_are_bit_identical_to_the_stored_golden_run(corpus, tmp_path):
    golden = json.loads(GOLDEN.read_text())
    got = run_all(corpus, tmp_path)
    assert set(got) == set(golden)
    for name in golden:
        assert got[name] == golden[name], name


if __name__ == "__main__":  # regenerate the golden numbers (same corpus and cache rules as the test session)
    import os
    import random
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import _text

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        os.environ["STACKWISE_CACHE"] = str(root / "cache")
        rng = random.Random(0)
        (root / "train.txt").write_text(_text(rng, 4000))
        (root / "val.txt").write_text(_text(rng, 400))
        numbers = run_all({"train": root / "train.txt", "val": root / "val.txt"}, root / "runs")
    lines = [f"  {json.dumps(row)}" for rows in numbers.values() for row in rows]  # one logged step a line
    text, at = "{\n", 0
    for i, (name, rows) in enumerate(numbers.items()):
        body = ",\n".join(lines[at:at + len(rows)])
        at += len(rows)
        text += f" {json.dumps(name)}: [\n{body}\n ]" + (",\n" if i < len(numbers) - 1 else "\n")
    GOLDEN.write_text(text + "}\n")
    print(f"wrote {GOLDEN}")
