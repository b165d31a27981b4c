"""Refactor guard (torchtitan's rule): the tiny recipes log bit-identical numbers before and after a change to the
training loop, growth and resume included. The stored numbers are tests/golden/losses-CAPABILITY-VENDOR.json, one
file per CPU kernel family (torch.backends.cpu.get_cpu_capability(), AVX2, AVX512, ..., and the CPU vendor), because
the same float32 program rounds differently in the last bit on AVX2 and AVX-512 kernels. On a machine whose family
has a file the check is bit for bit; on another it compares with every stored file to a small relative tolerance
(REL below: a real change of the numbers moves them far more) and says that it did. After a change that is *meant*
to change the numbers, regenerate the file of this machine's family with `python tests/test_golden.py`, delete the
others (or regenerate them on such a machine), and say why in the commit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from rich.console import Console

from stackwise import checkpoint
from stackwise import config as config_mod
from stackwise.train import train

GOLDEN_DIR = Path(__file__).parent / "golden"


def _cpu_vendor() -> str:
    """GenuineIntel, AuthenticAMD, ... (BLAS libraries take different code paths per vendor at one capability)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


# this machine's kernel family: the vector capability torch dispatches to, and the CPU's vendor
GOLDEN = GOLDEN_DIR / f"losses-{torch.backends.cpu.get_cpu_capability()}-{_cpu_vendor()}.json"
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


# Across kernel families: losses and LRs to a relative 1e-4, gradient norms (column 4) to 5e-3. Measured between
# AVX2 and AVX512 files of the same code: losses differ by up to 1.6e-5, gradient norms by up to 7e-4 (Muon's
# Newton-Schulz iterations amplify the last-bit differences); a real change moves the losses by far more.
REL, REL_GRAD_NORM = 1e-4, 5e-3


def _close(got: list[list], want: list[list]) -> bool:
    def near(col: int, a, b) -> bool:
        if not isinstance(b, float):
            return a == b
        return isinstance(a, float) and abs(a - b) <= (REL_GRAD_NORM if col == 4 else REL) * max(abs(b), 1e-3)
    return len(got) == len(want) and all(
        len(g) == len(w) and all(near(col, a, b) for col, (a, b) in enumerate(zip(g, w, strict=True)))
        for g, w in zip(got, want, strict=True))


def test_logged_numbers_are_bit_identical_to_the_stored_golden_run(corpus, tmp_path):
    stored = sorted(GOLDEN_DIR.glob("losses-*.json"))
    assert stored, "no golden numbers stored"
    got = run_all(corpus, tmp_path)
    if GOLDEN.is_file():  # this machine's kernel family: bit for bit
        golden = json.loads(GOLDEN.read_text())
        assert set(got) == set(golden)
        for name in golden:
            assert got[name] == golden[name], name
        return
    for path in stored:  # another family's numbers: equal up to last-bit rounding, compounded over 12 steps
        golden = json.loads(path.read_text())
        assert set(got) == set(golden), path.name
        for name in golden:
            assert _close(got[name], golden[name]), f"{name} (against {path.name}, to the tolerance REL)"
    print(f"no {GOLDEN.name}: compared with {', '.join(p.name for p in stored)} to the tolerance REL")


def test_the_tolerant_comparison_catches_a_real_change():
    rows = [[1, 3, 0.003, 5.2658634, 1.2212269, None], [4, 3, 0.003, 5.0, 1.0, 5.1]]
    assert _close([[1, 3, 0.003, 5.2658631, 1.2212268, None], rows[1]], rows)  # last-bit rounding
    assert not _close([[1, 3, 0.003, 5.2668634, 1.2212269, None], rows[1]], rows)  # 1e-3 off: a change
    assert not _close([[1, 4, 0.003, 5.2658634, 1.2212269, None], rows[1]], rows)  # another depth
    assert not _close(rows[:1], rows)  # a missing step
    assert _close([rows[0], [4, 3, 0.003, 5.0, 1.004, 5.1]], rows)  # a gradient norm, within its own tolerance
    assert not _close([rows[0], [4, 3, 0.003, 5.0, 1.01, 5.1]], rows)
    assert not _close([rows[0], [4, 3, 0.003, 5.0, 1.0, None]], rows)  # a missing validation loss


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
