"""Our primitives as lm-eval tasks, run offline end to end on an exported run; lm-eval agrees with our scorer."""

import json

import pytest
from rich.console import Console

from stackwise.cli import main

lm_eval = pytest.importorskip("lm_eval")


def test_lm_eval_runs_our_primitives_offline(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    from stackwise.train import train
    run = tmp_path / "run"
    train(tiny_cfg(train__steps=4), run, console=Console(quiet=True))
    tasks = "stackwise_var0_basic,stackwise_mc_var0_basic,stackwise_psm_calc"
    assert main(["eval", str(run), "--lm-eval", tasks, "--n", "6", "--shots", "1", "--seed", "4"]) == 0
    results = json.loads((run / "eval" / "lm_eval.json").read_text())
    assert set(results) == set(tasks.split(","))
    assert 0 <= results["stackwise_var0_basic"]["exact_match,strip"] <= 1
    # the same examples scored by stackwise itself give the same multiple-choice accuracy
    assert main(["eval", str(run), "--n", "6", "--shots", "1", "--seed", "4", "--tasks", "var0_basic"]) == 0
    ours = json.loads((run / "eval" / "primitives.json").read_text())["results"][0]["tasks"]["var0_basic"]
    assert results["stackwise_mc_var0_basic"]["acc,none"] == pytest.approx(ours["multiple_choice"]["accuracy"])
    assert results["stackwise_var0_basic"]["exact_match,strip"] == pytest.approx(ours["generation"]["accuracy"])
