import json
import os
import subprocess
import sys

import pytest

from stackwise.cli import main


def _run(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "stackwise", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_train_smoke_through_python_m(corpus, tmp_path):
    out = tmp_path / "run"
    proc = _run("train", "--config", "tiny", "--data.train", str(corpus["train"]), "--data.val", str(corpus["val"]),
                "--train.steps", "6", "--eval.every", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "final validation loss" in proc.stdout and "unigram entropy" in proc.stdout and "sample:" in proc.stdout
    assert str(out) in proc.stdout
    assert json.loads((out / "result.json").read_text())["steps"] == 6
    assert "steps: 6" in (out / "config.yaml").read_text()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    proc = _run("train", "--resume", str(out), "--train.steps", "8")  # the LR schedule is laid out over 6 steps
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "train.steps: the run was trained with 6" in proc.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"} == before


@pytest.mark.parametrize("args, needle", [
    (["--train.steps", "-5"], "train.steps"),
    (["--model.n_heads", "3"], "model.n_heads"),
    (["--growth.method", "magic"], "growth.method"),
    (["--optim.name", "lion"], "optim.name"),
    (["--data.train", "/no/such/file.txt"], "/no/such/file.txt"),
    (["--config", "/no/such/recipe.yaml"], "/no/such/recipe.yaml"),
    (["--resume", "/no/such/run"], "/no/such/run"),
])
def test_user_errors_exit_nonzero_with_one_line(args, needle, capsys, tmp_path):
    code = main(["train", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_yaml_typo_through_the_command_line(tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("model:\n  n_layer: 4\n")
    proc = _run("train", "--config", str(recipe))
    assert proc.returncode == 2
    assert "unknown config field 'model.n_layer'" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_flag_is_rejected(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--train.stepz", "3"])
    assert e.value.code != 0


def test_help_lists_every_field_with_its_default():
    proc = _run("train", "--help")
    assert proc.returncode == 0
    for flag in ("--model.n_layers", "--model.d_model", "--train.steps", "--train.lr", "--growth.method",
                 "--checkpoint.keep", "--data.train", "--optim.name", "--eval.every", "--resume", "--out"):
        assert flag in proc.stdout, flag
    assert "default: 500" in proc.stdout


def test_plan_json_schema(capsys):
    assert main(["plan", "--json", "--growth.method", "midas", "--model.n_layers", "8", "--growth.block_size", "2",
                 "--train.steps", "100"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert set(plan) == {"method", "n_layers", "block_size", "total_steps", "stages", "speedup"}
    assert (plan["method"], plan["n_layers"], plan["block_size"], plan["total_steps"]) == ("midas", 8, 2, 100)
    assert [s["depth"] for s in plan["stages"]] == [2, 4, 6, 8]
    assert plan["stages"][0]["source_layers"] is None
    assert plan["stages"][3]["source_layers"] == [0, 1, 2, 3, 2, 3, 4, 5]
    assert plan["stages"][0]["start_step"] == 0 and plan["stages"][-1]["end_step"] == 100
    assert all(a["end_step"] == b["start_step"] for a, b in zip(plan["stages"], plan["stages"][1:]))
    assert set(plan["speedup"]) == {"layer_flops", "total_flops"} and plan["speedup"]["layer_flops"] == 100 * 8 / (
        2 * 10 + 4 * 20 + 6 * 30 + 8 * 40)


def test_plan_table(capsys):
    assert main(["plan", "--growth.method", "gradstack", "--model.n_layers", "4", "--growth.block_size", "2"]) == 0
    out = capsys.readouterr().out
    assert "0 1 2 3 2 3" not in out and "0 1 0 1" in out and "layer-FLOPs" in out
