import json
import math

import pytest

from stackwise import compare
from stackwise import report as report_mod
from stackwise.cli import main
from stackwise.errors import UserError
from stackwise.speedup import compute_equivalent_speedup, cost_to_reach, iso_loss_speedup


def test_cost_to_reach_interpolates_the_first_crossing():
    costs, losses = [0, 10, 20, 30], [5.0, 4.0, 3.0, 3.5]
    assert cost_to_reach(costs, losses, 4.0) == 10
    assert cost_to_reach(costs, losses, 3.5) == pytest.approx(15)
    assert cost_to_reach(costs, losses, 5.5) == 0
    assert cost_to_reach(costs, losses, 2.9) is None


def test_iso_loss_speedup_known_answers():
    base = ([100, 200, 300, 400], [4.0, 3.0, 2.5, 2.0])
    fast = ([50, 100, 150, 200], [3.5, 2.8, 2.2, 2.0])  # reaches 2.0 at cost 200: 2x
    assert iso_loss_speedup(*base, *fast) == (pytest.approx(2.0), 0.0)
    between = ([100, 300], [3.0, 1.0])  # reaches 2.0 at 200 by interpolation
    assert iso_loss_speedup(*base, *between)[0] == pytest.approx(2.0)
    slow = ([100, 200, 300, 400], [4.0, 3.2, 2.6, 2.3])
    sp, gap = iso_loss_speedup(*base, *slow)
    assert sp is None and gap == pytest.approx(0.3)


def test_compute_equivalent_speedup_known_answers():
    base = ([100, 200, 300, 400], [4.0, 3.0, 2.5, 2.0])
    method = ([60, 120, 180], [3.6, 3.0, 2.5])  # final 2.5: the baseline needs 300 → 300 / 180
    assert compute_equivalent_speedup(*base, *method) == pytest.approx(300 / 180)
    better = ([60, 120], [3.0, 1.9])  # the baseline never reaches 1.9
    assert compute_equivalent_speedup(*base, *better) is None


def test_parse_methods():
    arms = compare.parse_methods("midas, midas:growth.alpha=2 ,shallow:model.n_layers=4,gradstack")
    labels = [a.label for a in arms]
    assert labels == ["none", "midas", "midas_growth.alpha-2", "shallow_model.n_layers-4", "gradstack"]
    assert arms[2].overrides == {"growth.method": "midas", "growth.alpha": "2"}
    assert arms[3].overrides == {"model.n_layers": "4", "growth.method": "none"}
    capped = compare.parse_methods("lidas:seeds=2:growth.alpha=2")[1]
    assert (capped.label, capped.max_seeds) == ("lidas_growth.alpha-2", 2)
    assert capped.overrides == {"growth.method": "lidas", "growth.alpha": "2"}
    with pytest.raises(UserError, match="positive integer"):
        compare.parse_methods("lidas:seeds=0")
    with pytest.raises(UserError, match="not field=value"):
        compare.parse_methods("midas:alpha")
    with pytest.raises(UserError, match="twice"):
        compare.parse_methods("midas,midas")
    # a value in brackets holds commas and colons: a list, a data mix
    base, listed, mixed = compare.parse_methods(
        "midas:growth.stage_fractions=[0.1,0.3,0.6]:seeds=1, none:data.mix=[bundled:0.8,synthetic:0.2]")
    assert base.label == "none"
    assert (listed.label, listed.max_seeds) == ("midas_growth.stage_fractions-0.1-0.3-0.6", 1)
    assert listed.overrides == {"growth.method": "midas", "growth.stage_fractions": "0.1,0.3,0.6"}
    assert mixed.overrides == {"growth.method": "none", "data.mix": "bundled:0.8,synthetic:0.2"}
    assert mixed.label == "none_data.mix-bundled_0.8-synthetic_0.2"
    for bad in ("midas:growth.stage_fractions=[0.1,0.3", "midas:growth.stage_fractions=0.1]"):
        with pytest.raises(UserError, match="unbalanced"):
            compare.parse_methods(bad)


def test_equal_compute_arm_uses_the_fastest_growth_method(tiny_cfg):
    common = {"model.n_layers": "4", "train.steps": "100", "growth.block_size": "1"}
    arms = compare.parse_methods("none,midas,midas:growth.alpha=2")
    ec = compare.equal_compute_arm(None, arms, common)
    from stackwise import growth
    cfg = compare.arm_config(None, arms[1], common)
    fastest = growth.speedup(cfg, growth.plan(cfg))["total_flops"]  # PROP-1 is faster than PROP-2
    assert ec.overrides["train.steps"] == str(round(100 / fastest))
    assert ec.overrides["growth.method"] == "none"


def test_compare_end_to_end_and_reuse(corpus, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--config", "tiny", "--methods", "none,midas,broken:data.val=/no/such/val.txt",
            "--equal-compute", "--jobs", "2", "--out", str(out),
            "--data.train", str(corpus["train"]), "--data.val", str(corpus["val"]), "--model.n_layers", "2",
            "--growth.block_size", "1", "--train.steps", "12", "--eval.every", "4", "--eval.sample_tokens", "0",
            "--eval.primitives_every", "6", "--eval.primitives_n", "2", "--eval.primitives_shots", "1",
            "--eval.primitives_tasks", "var0_basic,arithmetic"]
    assert main(argv) == 2  # the broken arm failed: reported, and the command says so
    assert "1 run(s) failed (broken_data.val--no-such-val.txt seed 0)" in capsys.readouterr().err
    for name in ("compare.json", "summary.json", "report.md", "calibration.json", "loss_vs_flops.png",
                 "loss_vs_wall.png", "loss_vs_calibrated_wall.png", "loss_vs_step.png", "depth.png", "isoplot.png",
                 "isoplot.json"):
        assert (out / name).is_file(), name
    cal = json.loads((out / "calibration.json").read_text())  # one cost: every arm shares the baseline's table
    assert set(cal["step_seconds"]) == {"1", "2"} and cal["arms"]["midas"] == cal["step_seconds"]
    summary = json.loads((out / "summary.json").read_text())
    broken = summary.pop()
    assert broken["status"] == "failed" and broken["failed"][0]["seed"] == 0
    assert "data.val: file not found: /no/such/val.txt" in broken["failed"][0]["error"]
    assert "**Failed runs (1)**" in (out / "report.md").read_text()
    assert "| broken_data.val--no-such-val.txt | failed |" in (out / "report.md").read_text()
    assert [r["method"] for r in summary] == ["none", "midas", "equal-compute"]
    for row in summary:
        assert row["status"] == "ok" and row["failed"] == []
        assert set(row) >= {"method", "seeds", "final_val_loss", "flops", "wall_s", "iso_loss_speedup",
                            "compute_equivalent_speedup"}
        assert set(row["final_val_loss"]) >= {"mean", "std"}
        assert set(row["iso_loss_speedup"]) >= {"flops", "wall"}
        assert set(row["compute_equivalent_speedup"]) >= {"flops", "wall"}
    base, midas, ec = summary
    assert base["iso_loss_speedup"]["flops"]["mean"] == pytest.approx(1.0)
    assert midas["flops"]["mean"] < base["flops"]["mean"]
    assert ec["flops"]["mean"] < base["flops"]["mean"]
    report = (out / "report.md").read_text()
    assert "| midas |" in report and "stackwise compare" in report and "isoplot.png" in report
    assert "Accuracy at matched validation loss" in report and (out / "matched_loss.json").is_file()
    assert report.index("## Headline: the mean over seeds") < report.index("## Per seed")
    assert midas["paired_final_loss_diff"]["mean"] == pytest.approx(
        midas["final_val_loss"]["mean"] - base["final_val_loss"]["mean"])
    assert base["mean_curve_speedup"]["flops"] == pytest.approx(1.0)
    (event,) = json.loads((out / "growth_events.json").read_text())  # MIDAS 1 -> 2 layers over 12 steps: step 4
    assert (event["method"], event["seed"], event["step"], event["depth"]) == ("midas", 0, 4, 2)
    assert event["gap_before"] is not None and event["gap_after"] is not None
    assert "| midas | 0 | 4 | 2 |" in report and (out / "growth_events.png").is_file()
    iso = json.loads((out / "isoplot.json").read_text())
    assert [p["step"] for p in iso["midas"]] == [6, 12] and all(0 <= p["accuracy"] <= 1 for p in iso["midas"])
    # chance of the plotted score: var0_basic multiple choice (1 in 5) and arithmetic greedy exact match (0)
    assert all(p["chance"] == pytest.approx(0.1) for p in iso["midas"])
    mtime = (out / "runs" / "midas" / "seed0" / "result.json").stat().st_mtime
    capsys.readouterr()
    assert main(argv) == 2  # a rerun reuses every finished run (and retries the failed one)
    assert "reusing" in capsys.readouterr().out
    assert (out / "runs" / "midas" / "seed0" / "result.json").stat().st_mtime == mtime
    spec = (out / "compare.json").read_text()
    assert main([*argv, "--train.lr", "0.01"]) == 2  # a changed recipe never reuses runs trained with the old one
    assert "runs/none/seed0: finished run trained with train.lr 0.003 but this arm asks for 0.01" in \
        capsys.readouterr().err
    assert (out / "compare.json").read_text() == spec
    assert main(["report", str(out)]) == 0
    # the depth analyses of every run, per-method means in the report; then the primitives with a looped block
    assert main(["analyze", str(out), "--k-max", "2", "--n", "2", "--tasks", "var0_basic", "--batches", "1"]) == 0
    run = out / "runs" / "midas" / "seed0"
    for name in ("looping", "similarity", "depth_use"):
        assert (run / "analysis" / f"{name}.json").is_file() and (run / "analysis" / f"{name}.png").is_file()
    looping = json.loads((run / "analysis" / "looping.json").read_text())
    assert (looping["start"], looping["end"]) == (0, 1) and [r["k"] for r in looping["results"]] == [1, 2]
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    assert set(analysis) == {"none", "midas", "equal-compute"} and len(analysis["midas"]["looping_mean_accuracy"]) == 2
    assert "Depth analyses" in (out / "report.md").read_text() and (out / "analysis" / "analysis.png").is_file()
    # analysed again with the same settings: each run's stored analyses are reused, unless its model is another
    settings = run / "analysis" / "settings.json"
    stored = json.loads(settings.read_text())
    assert len(stored["model_sha256"]) == 64
    settings.write_text(json.dumps({**stored, "model_sha256": "0" * 64}))
    capsys.readouterr()
    assert main(["analyze", str(out), "--k-max", "2", "--n", "2", "--tasks", "var0_basic", "--batches", "1"]) == 0
    log = capsys.readouterr().out.replace("\n", "")
    assert log.count("(made with the same settings from this model)") == 2 and log.count("analyzing ") == 1
    assert f"analyzing {run}" in log and json.loads(settings.read_text()) == stored
    assert main(["eval", str(run), "--loop", "0:2:3", "--n", "2", "--shots", "1", "--tasks", "var0_basic"]) == 0
    looped = json.loads((run / "eval" / "primitives-loop-0-2-3.json").read_text())
    assert looped["loop"] == [0, 2, 3] and looped["results"][0]["depth"] == 6
    assert main(["eval", str(run), "--loop", "1:5:2"]) == 2  # END beyond the depth: one line
    assert main(["analyze", str(run), "--loop", "2:1"]) == 2
    # a run evaluated on its own (as a study does while the others train) is not scored again for the comparison;
    # one scored with other tasks or on its checkpoints is
    capsys.readouterr()
    first = ["--n", "2", "--shots", "1", "--tasks", "var1_code,psm"]
    assert main(["eval", str(out / "runs" / "none" / "seed0"), *first]) == 0
    assert main(["eval", str(out / "runs" / "midas" / "seed0"), *first[:-1], "psm,var1_code"]) == 0
    assert main(["eval", str(out / "runs" / "equal-compute" / "seed0"), *first, "--checkpoint", "all"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), *first]) == 0
    log = capsys.readouterr().out
    assert f"reusing {out / 'runs' / 'none' / 'seed0' / 'eval' / 'primitives.json'}" in log.replace("\n", "")
    assert log.count("evaluating final") == 2 and log.count("reusing") == 1
    table = json.loads((out / "eval" / "primitives.json").read_text())
    assert set(table) == {"none", "midas", "equal-compute"}
    # results stay usable without the models (a study published across sittings keeps only small files)
    import shutil

    for label in ("none", "midas", "equal-compute"):
        shutil.rmtree(out / "runs" / label / "seed0" / "final")
    capsys.readouterr()
    assert main(["eval", str(out), "--n", "2", "--shots", "1", "--tasks", "var1_code,psm"]) == 0
    assert "reusing" in capsys.readouterr().out
    assert json.loads((out / "eval" / "primitives.json").read_text()) == table
    before = (out / "analysis" / "analysis.json").read_text()
    assert main(["analyze", str(out), "--k-max", "2", "--n", "2", "--tasks", "var0_basic", "--batches", "1"]) == 0
    assert (out / "analysis" / "analysis.json").read_text() == before
    assert main(["analyze", str(out), "--k-max", "3", "--n", "2", "--tasks", "var0_basic", "--batches", "1"]) == 2
    assert table["midas"]["var1_code"]["multiple_choice"]["n"] == 2 and "| var1_code | 20% |" in (
        out / "eval" / "primitives.md").read_text()


def test_report_on_a_non_comparison_dir(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "compare.json" in capsys.readouterr().err


def _curve(flops: list[float], val: list[float]) -> report_mod.Curve:
    return report_mod.Curve(steps=list(range(len(val))), flops=flops, wall=flops, calibrated_wall=flops, val=val,
                            depth_at=[], boundaries=[])


def test_paired_difference_has_a_t_interval():
    d = report_mod.paired_difference([0.1, 0.2, 0.3])
    half = 4.303 * 0.1 / 3 ** 0.5
    assert d["mean"] == pytest.approx(0.2) and d["ci95"] == pytest.approx([0.2 - half, 0.2 + half]) and d["n"] == 3
    assert report_mod.paired_difference([0.5])["ci95"] is None
    assert report_mod.paired_difference([])["mean"] is None
    assert report_mod.paired_difference([0.0] * 40)["ci95"] == [0.0, 0.0]


def test_the_headline_counts_the_seeds_that_never_reach_the_baseline():
    """Seed 0 reaches the baseline at half its FLOPs (2x), seed 1 never does: the per-seed speedup reads 2x from
    1 of 2 seeds, while the seed-mean curve stays above the baseline's mean final loss and the paired difference
    is positive."""
    costs = [1.0, 2.0, 3.0, 4.0]
    base = {0: _curve(costs, [5.0, 4.0, 3.0, 2.0]), 1: _curve(costs, [5.0, 4.0, 3.0, 2.0])}
    good = _curve(costs, [4.0, 2.0, 1.9, 1.8])
    bad = _curve(costs, [5.0, 4.5, 4.0, 3.0])
    none, method = report_mod.summarize({"none": base, "midas": {0: good, 1: bad}})
    assert method["reached_baseline_loss"] == "1/2" and method["iso_loss_speedup"]["flops"]["mean"] == pytest.approx(2)
    assert method["paired_final_loss_diff"]["mean"] == pytest.approx((1.8 - 2 + 3.0 - 2) / 2)
    curve = method["mean_curve_speedup"]
    assert curve["flops"] is None and curve["gap"] == pytest.approx(2.4 - 2.0)  # mean curve ends at (1.8 + 3) / 2
    assert none["mean_curve_speedup"]["flops"] == pytest.approx(1.0)
    # the baseline's mean curve gets down to the method's mean final loss 2.4 at cost 3.6 (3 -> 2 over costs 3 -> 4),
    # which the method spends 4 on: 0.9x, the baseline stopped there is cheaper
    assert curve["compute_equivalent"]["flops"] == pytest.approx(3.6 / 4)
    line = report_mod._headline(method)
    assert "| midas | 2 |" in line and "— / — (gap +0.400)" in line and "| 1/2 |" in line and "1.800 / 3.000" in line
    assert "| 0.90× / " in line
    # both seeds good: the mean curve reaches the baseline's final loss at 2 FLOPs, a 2x speedup
    _, method = report_mod.summarize({"none": base, "midas": {0: good, 1: good}})
    assert method["mean_curve_speedup"]["flops"] == pytest.approx(2.0) and method["mean_curve_speedup"]["gap"] == 0


def _primitive_log(path, points):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"step": 10 * (i + 1), "val_loss": loss, "tasks": {
        "var0_basic": {"generation": {"accuracy": 0.0, "chance": 0.0},
                       "multiple_choice": {"accuracy": acc, "chance": 0.2}},
        "arithmetic": {"generation": {"accuracy": acc / 2, "chance": 0.0}}}} for i, (loss, acc) in enumerate(points)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_accuracy_at_matched_validation_loss(tmp_path):
    """Every run reaches loss 4.0 (the highest of the runs' lowest losses); each run's accuracy there is interpolated
    between its evaluations around the crossing, then averaged over seeds with a t-interval."""
    spec = {"arms": [{"label": "none"}, {"label": "midas"}], "seeds": [0, 1]}
    curves = {("none", 0): [(5.0, 0.2), (4.5, 0.3), (4.0, 0.4)],  # reaches 4.0 at its last evaluation: 0.4
              ("none", 1): [(5.0, 0.2), (3.8, 0.5)],  # 4.0 is 5/6 of the way from 5.0 to 3.8: 0.45
              ("midas", 0): [(4.4, 0.3), (3.6, 0.7)],  # half way: 0.5
              ("midas", 1): [(4.2, 0.2), (3.9, 0.8)]}  # 2/3 of the way: 0.6
    for (label, seed), points in curves.items():
        _primitive_log(tmp_path / "runs" / label / f"seed{seed}" / "eval" / "primitives_during_training.jsonl",
                       points)
    matched = report_mod.matched_loss(tmp_path, spec)
    assert matched["val_loss"] == pytest.approx(4.0)
    none, midas = matched["arms"]["none"]["var0_basic"], matched["arms"]["midas"]["var0_basic"]
    assert none["mean"] == pytest.approx((0.4 + 0.2 + (5.0 - 4.0) / 1.2 * 0.3) / 2) and none["n"] == 2
    assert midas["mean"] == pytest.approx((0.5 + 0.6) / 2)
    assert matched["arms"]["midas"]["arithmetic"]["mean"] == pytest.approx((0.25 + 0.3) / 2)
    assert midas["ci95"][0] < midas["mean"] < midas["ci95"][1]
    # the plotted mean score: var0_basic by multiple choice, arithmetic greedy, averaged
    assert matched["arms"]["midas"]["mean"]["mean"] == pytest.approx((0.55 + 0.275) / 2)
    # paired with the same seed's baseline: (0.5 - 0.4, 0.6 - 0.45)
    paired = matched["vs_baseline"]["midas"]["var0_basic"]
    assert paired["mean"] == pytest.approx((0.1 + 0.15) / 2) and paired["n"] == 2
    assert "none" not in matched["vs_baseline"]
    lines = "\n".join(report_mod._matched_lines(matched))
    assert "matched validation loss 4.0000" in lines and "| midas | 2 |" in lines
    assert f"| midas | 2 | {100 * matched['vs_baseline']['midas']['mean']['mean']:+.1f} [" in lines


def test_isoplot_leaves_out_evaluations_worse_than_a_uniform_guess(tmp_path):
    """A first data stage of other text puts the validation loss far above ln(vocab): those evaluations are left out
    of the isoplot; the rest are averaged over seeds per step, per task and for the mean score."""
    from stackwise import config as config_mod

    spec = {"arms": [{"label": "none"}], "seeds": [0, 1]}
    ceiling = math.log(512)
    logs = {0: [(20.0, 0.9), (ceiling + 0.01, 0.9), (5.0, 0.4), (4.0, 0.6)], 1: [(ceiling - 0.01, 0.2), (4.5, 0.6),
                                                                              (3.0, 0.8)]}
    for seed, points in logs.items():
        run = tmp_path / "runs" / "none" / f"seed{seed}"
        _primitive_log(run / "eval" / "primitives_during_training.jsonl", points)
        config_mod.save(config_mod.load(overrides={"model.vocab_size": 512}), run / "config.yaml")
    data = report_mod.isoplot(tmp_path, spec, matched=4.0)["none"]
    # steps 10 and 20 of seed 0 are above ln 512; seed 1's step 10 is just below it
    assert [(p["step"], p["n_seeds"]) for p in data] == [(10, 1), (20, 1), (30, 2), (40, 1)]
    assert data[0]["val_loss"] == pytest.approx(ceiling - 0.01) and data[0]["tasks"]["var0_basic"] == 0.2
    # step 30: seed 0 at (5.0, 0.4) and seed 1 at (3.0, 0.8); arithmetic scores half of var0_basic
    assert data[2]["val_loss"] == pytest.approx(4.0) and data[2]["tasks"]["var0_basic"] == pytest.approx(0.6)
    assert data[2]["tasks"]["arithmetic"] == pytest.approx(0.3)
    assert data[2]["accuracy"] == pytest.approx((0.6 + 0.3) / 2) and data[2]["chance"] == pytest.approx(0.1)
    assert (tmp_path / "isoplot.png").is_file() and json.loads((tmp_path / "isoplot.json").read_text())["none"] == data


def test_unknown_costs_give_no_speedup_rather_than_infinity():
    nan = float("nan")
    assert iso_loss_speedup([1.0, 2.0], [5.0, 4.0], [nan, nan], [4.5, 3.9]) == (None, 0.0)
    assert compute_equivalent_speedup([1.0, 2.0], [5.0, 4.0], [nan, nan], [4.5, 4.2]) is None


def test_a_finished_run_is_reused_only_for_the_config_it_trained(tmp_path):
    from stackwise import config as config_mod

    run = tmp_path / "seed0"
    run.mkdir()
    cfg = config_mod.load("tiny", {"train.seed": "0"})
    with pytest.raises(UserError, match="without config.yaml"):
        compare.check_reusable(run, cfg)
    config_mod.save(cfg, run / "config.yaml")
    compare.check_reusable(run, config_mod.load("tiny", {"train.seed": "0", "eval.every": "7"}))  # observation only
    with pytest.raises(UserError, match=r"model.d_model 64 but this arm asks for 48 \(and 1 more fields\)"):
        compare.check_reusable(run, config_mod.load("tiny", {"train.seed": "1", "model.d_model": "48"}))


def test_a_finished_run_is_not_reused_once_its_text_has_changed(tmp_path):
    """The config names a file, not its text: a run trained before the file (or the generator) changed is refused."""
    from stackwise import config as config_mod
    from stackwise import data as data_mod

    text = tmp_path / "train.txt"
    text.write_text("the first text\n" * 50)
    cfg = config_mod.load("tiny", {"train.seed": "0", "data.train": str(text), "data.val": str(text)})
    run = tmp_path / "seed0"
    run.mkdir()
    config_mod.save(cfg, run / "config.yaml")
    data_mod.save_identity(cfg, run)
    compare.check_reusable(run, cfg)  # unchanged: reused
    text.write_text("another text\n" * 50)
    with pytest.raises(UserError, match=r"cannot reuse it: the text of its train split .* has changed"):
        compare.check_reusable(run, cfg)
    (run / "data.json").write_text("[1, 2")
    with pytest.raises(UserError, match="not the JSON object stackwise writes"):
        compare.check_reusable(run, cfg)


def test_calibration_times_each_step_cost_once_and_prices_each_arm_with_its_own(tmp_path, monkeypatch):
    from stackwise import calibrate

    out = tmp_path / "cmp"
    arms = [{"label": "none", "overrides": {"growth.method": "none"}},
            {"label": "lr", "overrides": {"growth.method": "none", "train.lr": "0.01"}},
            {"label": "muon", "overrides": {"growth.method": "midas", "optim.name": "muon"}}]
    spec = {"config": "tiny", "common": {"growth.block_size": "1"}, "seeds": [0], "arms": arms}
    stages = {"none": [(2, 0, 20)], "lr": [(2, 0, 20)], "muon": [(1, 0, 10), (2, 10, 20)]}
    for label, st in stages.items():
        run = out / "runs" / label / "seed0"
        run.mkdir(parents=True)
        (run / "result.json").write_text(json.dumps(
            {"stages": [{"depth": d, "start_step": a, "end_step": b} for d, a, b in st]}))
    timed = []

    def fake(setups):
        timed.extend((cfg.optim.name, d) for cfg, d in setups)
        return [0.1 * d * (3 if cfg.optim.name == "muon" else 1) for cfg, d in setups]

    monkeypatch.setattr(calibrate, "step_seconds", fake)
    compare.calibrate(out, spec, log=lambda *_: None)
    assert sorted(timed) == [("adamw", 2), ("muon", 1), ("muon", 2)]  # the LR arm shares the baseline's table
    saved = json.loads((out / "calibration.json").read_text())
    assert saved["step_seconds"] == {"2": 0.2} and saved["arms"]["lr"] == {"2": 0.2}
    assert saved["arms"]["muon"] == {"1": pytest.approx(0.3), "2": pytest.approx(0.6)}
    timed.clear()
    compare.calibrate(out, spec, log=lambda *_: None)  # nothing new to time
    assert timed == []
    # an arm added later at the baseline's cost (another LR) gets the baseline's table with no pass of its own
    spec["arms"].append({"label": "lr2", "overrides": {"growth.method": "none", "train.lr": "0.02"}})
    (out / "runs" / "lr2" / "seed0").mkdir(parents=True)
    (out / "runs" / "lr2" / "seed0" / "result.json").write_text(json.dumps(
        {"stages": [{"depth": 2, "start_step": 0, "end_step": 20}]}))
    compare.calibrate(out, spec, log=lambda *_: None)
    assert timed == [] and json.loads((out / "calibration.json").read_text())["arms"]["lr2"] == {"2": 0.2}
    tables = report_mod._calibration(out)
    assert tables["muon"][2] == pytest.approx(0.6) and "muon: depth 1: 300.0 ms" in report_mod._calibration_text(
        tables) and "lr:" not in report_mod._calibration_text(tables)
    (out / "calibration.json").write_text(json.dumps({"step_seconds": {"2": 0.5}}))  # before per-arm tables
    assert report_mod._calibration(out) == {"": {2: 0.5}}
    compare.calibrate(out, spec, log=lambda *_: None)  # the old table is the baseline's; only muon is timed
    assert sorted(timed) == [("muon", 1), ("muon", 2)]
    assert json.loads((out / "calibration.json").read_text())["arms"]["lr"] == {"2": 0.5}


def test_report_of_a_comparison_stopped_before_its_calibration_pass(tmp_path):
    """Two seeds, no calibration.json (the comparison was stopped): the report builds, calibrated time stays NaN."""
    arms = [{"label": "none", "overrides": {"growth.method": "none"}},
            {"label": "shallow", "overrides": {"growth.method": "none", "model.n_layers": "1"}}]
    (tmp_path / "compare.json").write_text(json.dumps(
        {"config": "tiny", "common": {}, "seeds": [0, 1], "arms": arms, "command": "stackwise compare"}))
    for label, depth, final in (("none", 2, 3.0), ("shallow", 1, 3.1)):
        for seed in (0, 1):
            run = tmp_path / "runs" / label / f"seed{seed}"
            run.mkdir(parents=True)
            rows = [{"step": s, "flops": s * depth * 1e6, "wall_s": s * 0.1, "depth": depth, "train_loss": final,
                     "val_loss": final + 1.0 / s + 0.01 * seed} for s in (5, 10, 20)]
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            (run / "result.json").write_text(json.dumps(
                {"stages": [{"depth": depth, "start_step": 0, "end_step": 20}]}))
    rows = {r["method"]: r for r in report_mod.build(tmp_path, log=lambda *_: None)}
    assert rows["shallow"]["final_val_loss"]["n"] == 2
    assert rows["none"]["calibrated_wall_s"]["n"] == 2 and math.isnan(rows["none"]["calibrated_wall_s"]["mean"])
    assert "not yet measured" in (tmp_path / "report.md").read_text()


def test_job_env_splits_the_threads_and_gives_each_slot_its_own_gpu():
    environ = {"OMP_NUM_THREADS": "8", "PATH": "/bin"}
    assert compare.job_env(1, 0, environ, gpus=4) == environ  # one job: the environment as it is
    assert compare.job_env(3, 2, environ, gpus=0) == {"OMP_NUM_THREADS": "2", "PATH": "/bin"}
    assert compare.job_env(16, 0, environ, gpus=0)["OMP_NUM_THREADS"] == "1"  # never zero threads
    visible = {**environ, "CUDA_VISIBLE_DEVICES": "2,3"}
    assert [compare.job_env(3, s, visible, gpus=2)["CUDA_VISIBLE_DEVICES"] for s in range(3)] == ["2", "3", "2"]
    assert [compare.job_env(2, s, environ, gpus=4)["CUDA_VISIBLE_DEVICES"] for s in range(2)] == ["0", "1"]
    assert "CUDA_VISIBLE_DEVICES" not in compare.job_env(2, 1, environ, gpus=1)  # one GPU: shared


def test_jobs_train_that_many_runs_at_once_in_order_and_stop_after_an_error(tmp_path, monkeypatch):
    import threading

    monkeypatch.setattr(compare, "_gpu_count", lambda: 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    arms = compare.parse_methods("none,midas")
    todo = [(arm, seed) for seed in range(3) for arm in arms]
    both = threading.Barrier(2, timeout=10)  # breaks unless two runs are under way at the same time
    lock, running, peak, started, fail_on = threading.Lock(), [0], [0], [], []

    def fake_ensure_run(out, base, arm, seed, common, log, plugins, env):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            started.append((arm.label, seed, env["OMP_NUM_THREADS"]))
        if len(started) <= 2 and not fail_on:
            both.wait()
        with lock:
            running[0] -= 1
        if (arm.label, seed) in fail_on:
            raise RuntimeError("boom")

    monkeypatch.setattr(compare, "ensure_run", fake_ensure_run)
    compare.train_all(todo[:4], tmp_path, None, {}, jobs=2)
    assert peak[0] == 2 and {t for *_, t in started} == {"1"}
    assert [(a, s) for a, s, _ in started] == [("none", 0), ("midas", 0), ("none", 1), ("midas", 1)]
    started.clear()
    fail_on.append(("midas", 1))
    with pytest.raises(RuntimeError, match="boom"):
        compare.train_all(todo[3:], tmp_path, None, {}, jobs=1)
    assert [(a, s) for a, s, _ in started] == [("midas", 1)]  # the runs after the error never started
    assert started[0][2] == "2"  # one job: the environment untouched


def test_calibration_times_sophia_over_whole_periods_of_its_hessian_estimate(tiny_cfg, monkeypatch):
    """Sophia's extra pass every k steps is real compute: each timed block holds whole periods, so exactly one."""
    from stackwise import calibrate, sophia

    calls = {True: 0, False: 0}  # train steps per optimizer: Sophia's or AdamW's
    monkeypatch.setattr(calibrate, "train_step", lambda model, run_model, opt, *a: calls.update(
        {opt.sophia_g: calls[opt.sophia_g] + 1}))
    calibrate.step_seconds([(tiny_cfg(optim__name="sophia"), 2), (tiny_cfg(), 2)], steps=3, rounds=2, warmup=1)
    assert calls == {False: 1 + 2 * 3, True: 1 + 2 * sophia.EVERY}


def test_growth_is_also_measured_against_its_own_fixed_depth_arm(tmp_path):
    """A growth arm with another optimizer is paired with that optimizer's fixed-depth arm as well as the baseline:
    soap-midas reaches soap's final loss at half soap's FLOPs (2x), while against AdamW's baseline it is 4x."""
    spec_arms = [{"label": "none", "overrides": {"growth.method": "none"}},
                 {"label": "midas", "overrides": {"growth.method": "midas", "growth.alpha": "1"}},
                 {"label": "soap", "overrides": {"optim.name": "soap", "growth.method": "none"}},
                 {"label": "soap-midas", "overrides": {"growth.method": "midas", "optim.name": "soap"}},
                 {"label": "soap-lr", "overrides": {"growth.method": "midas", "optim.name": "soap", "train.lr": "1"}}]
    spec = {"config": "tiny", "common": {}, "seeds": [0], "arms": spec_arms, "command": "stackwise compare"}
    assert report_mod.own_baselines(spec) == {"soap-midas": "soap"}  # midas's own is the baseline; soap-lr has none
    (tmp_path / "compare.json").write_text(json.dumps(spec))
    # validation loss 8 / step at steps 1, 2, 4, 8; FLOPs per step: the baseline 4, soap 2, the growth arms 1
    for label, flops_per_step in (("none", 4), ("midas", 1), ("soap", 2), ("soap-midas", 1), ("soap-lr", 1)):
        run = tmp_path / "runs" / label / "seed0"
        run.mkdir(parents=True)
        rows = [{"step": s, "flops": s * flops_per_step, "wall_s": s, "depth": 2, "train_loss": 1.0,
                 "val_loss": 8.0 / s} for s in (1, 2, 4, 8)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (run / "result.json").write_text(json.dumps({"stages": [{"depth": 2, "start_step": 0, "end_step": 8}]}))
    rows = {r["method"]: r for r in report_mod.build(tmp_path, log=lambda *_: None)}
    assert rows["soap-midas"]["mean_curve_speedup"]["flops"] == pytest.approx(4.0)
    own = rows["soap-midas"]["against_own_baseline"]
    assert own["baseline"] == "soap" and own["mean_curve_speedup"]["flops"] == pytest.approx(2.0)
    assert own["paired_final_loss_diff"]["mean"] == pytest.approx(0.0)
    assert not any("against_own_baseline" in rows[m] for m in ("none", "midas", "soap", "soap-lr"))
    text = (tmp_path / "report.md").read_text()
    assert "## Growth against its own fixed-depth arm" in text and "| soap-midas vs soap | 1 |" in text
    assert "| 2.00× / " in text.split("## Growth against its own fixed-depth arm")[1]
