"""benchmarks/seed_table.py: the study READMEs' per-seed tables (cells, paired column, seeds reaching the baseline)."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("seed_table", Path(__file__).parents[1] / "benchmarks" / "seed_table.py")
seed_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed_table)


def test_the_table_has_each_seed_the_paired_difference_and_the_seeds_reaching_the_baseline():
    summary = [
        {"method": "none", "per_seed_final_val_loss": {"0": 3.0, "1": 3.1, "2": 3.2}},
        {"method": "midas", "per_seed_final_val_loss": {"0": 2.9, "2": 3.3},
         "paired_final_loss_diff": {"mean": 0.0, "ci95": [-1.27, 1.27], "n": 2}},
    ]
    lines = seed_table.seed_table(summary, {"none": "baseline"}, digits=2).splitlines()
    assert lines[0].startswith("| arm | seed 0 | seed 1 | seed 2 |")
    assert lines[2] == "| baseline | 3.00 | 3.10 | 3.20 | (reference) |  |"
    # seed 1 is missing; seed 0 reaches the baseline (2.9 <= 3.0), seed 2 does not
    assert lines[3] == "| midas | 2.90 |  | 3.30 | +0.00 [−1.270, +1.270] | 1/2 |"
