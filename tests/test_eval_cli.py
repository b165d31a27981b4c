import json

import torch

from stackwise.cli import main
from stackwise.evals import runner


def test_dump_writes_one_file_per_task_with_full_prompts(tmp_path):
    assert main(["eval", "--suite", "primitives", "--dump", str(tmp_path / "d"), "--n", "4", "--seed", "3"]) == 0
    files = sorted(p.name for p in (tmp_path / "d").glob("*.jsonl"))
    assert "var2_code.jsonl" in files and "copy_random.jsonl" in files and len(files) == 14
    tasks = sorted(p.name for p in (tmp_path / "d").glob("*.yaml"))  # lm-eval tasks: 14 generation + 11 multiple choice
    assert len(tasks) == 25 and "stackwise_mc_var2_code.yaml" in tasks and "stackwise_psm_calc.yaml" in tasks
    rows = [json.loads(line) for line in (tmp_path / "d" / "var1_math.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and set(rows[0]) >= {"task", "prompt", "answer"}
    assert rows[0]["prompt"].count("\n\n") == 5 and rows[0]["prompt"].endswith("Answer:")
    again = tmp_path / "again"
    main(["eval", "--dump", str(again), "--n", "4", "--seed", "3"])
    assert (again / "var1_math.jsonl").read_text() == (tmp_path / "d" / "var1_math.jsonl").read_text()


def test_eval_a_trained_run(tiny_cfg, tmp_path, capsys):
    from rich.console import Console

    from stackwise.train import train
    run = tmp_path / "run"
    train(tiny_cfg(train__steps=6, checkpoint__every=3, checkpoint__keep=5), run, console=Console(quiet=True))
    assert main(["eval", str(run), "--n", "3", "--shots", "1", "--tasks", "var0_basic,psm_calc",
                 "--checkpoint", "all"]) == 0
    report = json.loads((run / "eval" / "primitives.json").read_text())
    assert [r["step"] for r in report["results"]] == [3, 6]
    assert report["results"][1]["val_loss"] is not None
    task = report["results"][0]["tasks"]["var0_basic"]
    assert task["multiple_choice"]["n"] == 3 and task["multiple_choice"]["chance"] == 0.2
    assert 0 <= task["multiple_choice"]["ci95"][0] <= task["multiple_choice"]["ci95"][1] <= 1
    assert "var0_basic" in capsys.readouterr().out
    # final/ (Hugging Face names) loads back to the same function as the last checkpoint
    (_, _, final), = runner.models(run, "final")
    (_, _, last), = runner.models(run, "latest")
    x = torch.randint(0, 300, (2, 16))
    torch.testing.assert_close(final(x), last(x), rtol=0, atol=0)
    assert main(["eval", str(run), "--tasks", "nope"]) == 2
