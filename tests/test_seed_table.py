"""benchmarks/seed_table.py: the study READMEs' per-seed tables (cells, paired column, seeds reaching the baseline)."""

import benchmark_module

seed_table = benchmark_module.load("seed_table")


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


def test_the_pair_table_subtracts_two_arms_seed_by_seed():
    summary = [
        {"method": "none", "per_seed_final_val_loss": {"0": 3.0, "1": 3.1, "2": 3.2}},
        {"method": "a", "per_seed_final_val_loss": {"0": 2.9, "1": 3.3, "2": 3.0}},
        {"method": "b", "per_seed_final_val_loss": {"0": 3.0, "1": 3.0, "2": 3.1}},
    ]
    lines = seed_table.pair_table(summary, [("a", "b")], {"a": "A"}).splitlines()
    # differences -0.1, +0.3, -0.1: mean +0.0333, A lower in 2 of 3 seeds
    assert lines[2].startswith("| A − b | +0.0333 [") and lines[2].endswith("| 2/3 |")


def test_the_event_table_splits_the_gap_into_before_across_and_between_events():
    summary = [{"method": "none", "per_seed_final_val_loss": {"0": 3.0}},
               {"method": "m", "per_seed_final_val_loss": {"0": 3.05}}]
    events = [{"method": "m", "seed": 0, "step": 10, "gap_before": 0.1, "gap_after": 0.3},
              {"method": "m", "seed": 0, "step": 20, "gap_before": 0.2, "gap_after": 0.25}]
    row = seed_table.event_table(summary, events, {}).splitlines()[2]
    # before 0.1; across (0.3 - 0.1) + (0.25 - 0.2) = 0.25; between 0.2 - 0.3 = -0.1; after 0.25; final 0.05
    assert row == "| m | +0.100 | +0.250 | −0.100 | +0.250 | +0.050 |"
