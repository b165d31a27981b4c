import json

import pytest

import benchmark_module

reasoning_table = benchmark_module.load("reasoning_table")


def _run(path, val_loss, acc, lo, probe=None, looping=None):
    (path / "eval").mkdir(parents=True)
    (path / "result.json").write_text(json.dumps({"final_val_loss": val_loss}))
    task = {"multiple_choice": {"accuracy": acc, "ci95": [lo, acc + 0.05], "chance": 0.2}, "generation": {}}
    (path / "eval" / "primitives.json").write_text(json.dumps({"results": [{"tasks": {"var0_code": task}}]}))
    if probe is not None:
        (path / "eval" / "probe.json").write_text(json.dumps({"per_seed": [{"late_accuracy": a} for a in probe]}))
    if looping is not None:
        (path / "analysis").mkdir()
        (path / "analysis" / "looping.json").write_text(json.dumps(
            {"start": 1, "end": 2, "results": [{"k": k + 1, "mean_accuracy": a} for k, a in enumerate(looping)]}))


def test_tables_from_a_comparisons_small_files(tmp_path):
    """Per run: bold only where the interval's lower end is above chance; per arm: seed means and the paired
    difference to the same-seed baseline, by hand; a run not finished (no result.json) is left out."""
    (tmp_path / "compare.json").write_text(json.dumps(
        {"arms": [{"label": "none"}, {"label": "midas"}], "seeds": [0, 1, 2]}))
    runs = tmp_path / "runs"
    _run(runs / "none" / "seed0", 3.4, 0.6, 0.55, probe=[0.2, 0.3], looping=[0.25, 0.2])
    _run(runs / "none" / "seed1", 3.6, 0.5, 0.45)
    _run(runs / "midas" / "seed0", 3.5, 0.3, 0.15, probe=[0.2])
    _run(runs / "midas" / "seed1", 3.9, 0.4, 0.35)
    (runs / "midas" / "seed2").mkdir()  # still training
    numbers = reasoning_table.collect(tmp_path, ("var0_code",))
    assert sorted(numbers["midas"]) == [0, 1]
    table = reasoning_table.per_run_table(numbers, reasoning_table.NAMES, ("var0_code",))
    assert "| baseline | 0 | 3.400 | **60.0% [55%, 65%]** | 25.0% ± 7.1% | 25.0 / 20.0% |" in table
    assert "| MIDAS | 0 | 3.500 | 30.0% [15%, 35%] | 20.0% | (not run) |" in table
    assert "| MIDAS | 1 | 3.900 | **40.0% [35%, 45%]** | (not run) | (not run) |" in table
    arms = reasoning_table.per_arm_table(numbers, reasoning_table.NAMES, ("var0_code",))
    half = 12.706 * (0.2 / 2 ** 0.5) / 2 ** 0.5  # t(0.975, 1 d.o.f.) x the std of (3.4, 3.6) / sqrt 2
    assert f"| baseline | 2 | 3.500 [{3.5 - half:.3f}, {3.5 + half:.3f}] | 55.0 [" in arms
    # paired: midas - none = (+0.1, +0.3) in loss, (-30, -10) points: mean +0.2 and -20.0
    line = next(row for row in arms.splitlines() if row.startswith("| MIDAS | baseline | 2 | +0.200"))
    assert "| −20.0 [" in line
    diffs = reasoning_table.paired_difference([-0.3, -0.1])
    assert diffs["mean"] == pytest.approx(-0.2) and f"{100 * diffs['ci95'][0]:+.1f}".replace("-", "−") in line


def test_an_arm_paired_with_another_than_the_first_and_the_primitives_alone(tmp_path):
    """An LR sweep: MIDAS at LR 6e-3 minus the fixed-depth run at 6e-3 (not the first arm, which is at another LR);
    the arm it is paired with is not itself paired; without probe and looping columns."""
    (tmp_path / "compare.json").write_text(json.dumps(
        {"arms": [{"label": "none"}, {"label": "lr6"}, {"label": "midas6"}], "seeds": [0]}))
    runs = tmp_path / "runs"
    _run(runs / "none" / "seed0", 3.4, 0.6, 0.55, probe=[0.2])
    _run(runs / "lr6" / "seed0", 3.5, 0.5, 0.45)
    _run(runs / "midas6" / "seed0", 3.7, 0.2, 0.1)
    numbers = reasoning_table.collect(tmp_path, ("var0_code",))
    arms = reasoning_table.per_arm_table(numbers, {}, ("var0_code",), {"midas6": "lr6"}, extras=False)
    means, diffs = arms.split("Paired difference")
    assert "| lr6 | 1 | 3.500 | 50.0 |" in means.splitlines()
    # 3.7 - 3.5 and 20% - 50%; lr6, a base, and none are not among the differences
    assert [row for row in diffs.splitlines() if row.startswith("| ") and "---" not in row][1:] == [
        "| midas6 | lr6 | 1 | +0.200 | −30.0 |"]
    assert "probe" not in arms
    runs_table = reasoning_table.per_run_table(numbers, {}, ("var0_code",), extras=False)
    assert "| none | 0 | 3.400 | **60.0% [55%, 65%]** |" in runs_table and "probe" not in runs_table
    with pytest.raises(AssertionError, match="no finished run of lr3"):
        reasoning_table.per_arm_table(numbers, {}, ("var0_code",), {"midas6": "lr3"})


def test_in_training_scores_pooled_over_seeds(tmp_path):
    """Correct answers and queries summed over an arm's finished runs at each step, with the Wilson interval of the
    sum and the depths the runs had; an unfinished run is left out."""
    (tmp_path / "compare.json").write_text(json.dumps({"arms": [{"label": "none"}, {"label": "midas"}],
                                                       "seeds": [0, 1]}))

    def during(run, rows):
        _run(run, 3.5, 0.5, 0.4)
        (run / "eval" / "primitives_during_training.jsonl").write_text("".join(json.dumps(
            {"step": step, "depth": depth, "tasks": {"var0_code": {"multiple_choice": {
                "accuracy": c / 50, "correct": c, "n": 50, "chance": 0.2, "ci95": [0, 1]}}}}) + "\n"
            for step, depth, c in rows))

    runs = tmp_path / "runs"
    during(runs / "none" / "seed0", [(500, 4, 10), (1000, 4, 20)])
    during(runs / "none" / "seed1", [(500, 4, 30), (1000, 4, 40)])
    during(runs / "midas" / "seed0", [(500, 2, 5), (1000, 4, 25)])
    during(runs / "midas" / "seed1", [(500, 2, 50), (1000, 4, 50)])
    (runs / "midas" / "seed1" / "result.json").unlink()  # still training
    table = reasoning_table.during_training_table(tmp_path, "var0_code", [500, 1000], reasoning_table.NAMES)
    lo, hi = reasoning_table.wilson(40, 100)
    assert f"| baseline | 2 | 40.0% [{100 * lo:.0f}%, {100 * hi:.0f}%] (n=100, depth 4) | 60.0% [" in table
    lo, hi = reasoning_table.wilson(5, 50)
    assert f"| MIDAS | 1 | 10.0% [{100 * lo:.0f}%, {100 * hi:.0f}%] (n=50, depth 2) | 50.0% [" in table
