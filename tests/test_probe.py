import json

import pytest
import torch
from rich.console import Console

from stackwise.cli import main
from stackwise.config import ModelConfig
from stackwise.evals import probe as P
from stackwise.model import Transformer


def test_probe_examples_follow_the_protocol():
    train, test = P.probe_examples(0, 64, 200)
    assert len(train) == 64 and len(test) == 200
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    depths = [e.prompt.count("\n") - 4 for e in train]  # header 2 lines + Question/What/Answer
    assert sorted(set(depths)) == [10, 15]  # 10 lines at depth 1, 15 at depth 2: half and half
    assert depths.count(10) == 32
    assert all(e.prompt.startswith("The following is a very short Python program.") for e in train)
    assert "\n\n" not in train[0].prompt  # 0-shot
    again, _ = P.probe_examples(0, 64, 200)
    assert [e.prompt for e in again] == [e.prompt for e in train]


class CharTok:
    """A character-level stand-in tokenizer (ids = code points mod 97)."""

    class Enc:
        def __init__(self, ids):
            self.ids = ids

    def encode(self, text, add_special_tokens=False):
        return self.Enc([ord(c) % 97 for c in text])


def test_answer_loss_counts_answer_tokens_only():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layers=1, d_model=32, n_heads=2, vocab_size=97))
    seqs = [P._encode(CharTok(), "abc=", " 12"), P._encode(CharTok(), "xy=", " 7")]
    x, y = P._batch(seqs, pad=0, device="cpu")
    assert (y != -100).sum() == 3 + 2
    logits = model(x)
    manual, count = 0.0, 0
    for i, (ids, n_prompt) in enumerate(seqs):
        for pos in range(n_prompt - 1, len(ids) - 1):
            manual += -torch.log_softmax(logits[i, pos], -1)[ids[pos + 1]]
            count += 1
    assert P.answer_loss(model, x, y).item() == pytest.approx((manual / count).item(), rel=1e-5)


def test_probe_command_on_a_tiny_run(tiny_cfg, tmp_path):
    from stackwise.train import train
    run = tmp_path / "run"
    train(tiny_cfg(train__steps=3), run, console=Console(quiet=True))
    assert main(["probe", str(run), "--steps", "4", "--eval-every", "2", "--window", "2", "--seeds", "2",
                 "--n-train", "16", "--n-test", "20", "--lr", "1e-3"]) == 0
    result = json.loads((run / "eval" / "probe.json").read_text())
    assert result["chance"] == 0.2 and result["late_accuracy"]["n"] == 2 and result["config"]["n_train"] == 16
    assert [c["step"] for c in result["per_seed"][0]["curve"]] == [0, 2, 4]
    assert all(0 <= s["late_accuracy"] <= 1 for s in result["per_seed"])


def test_probe_on_a_comparison_takes_the_runs_of_the_chosen_training_seeds(tiny_cfg, tmp_path, capsys):
    import shutil

    from stackwise.train import train
    run = tmp_path / "run"
    train(tiny_cfg(train__steps=2), run, console=Console(quiet=True))
    study = tmp_path / "study"  # a comparison's layout: compare.json and runs/<arm>/seed<s>
    arms = [{"label": label, "overrides": {}, "max_seeds": None} for label in ("none", "midas")]
    for arm in arms:
        for seed in (0, 1):
            shutil.copytree(run, study / "runs" / arm["label"] / f"seed{seed}")
    (study / "compare.json").write_text(json.dumps({"seeds": [0, 1], "arms": arms}))
    flags = ["--steps", "2", "--eval-every", "2", "--window", "1", "--seeds", "1", "--n-test", "10"]
    assert main(["probe", str(study), *flags, "--run-seeds", "1"]) == 0
    probed = sorted(str(p.parent.parent.relative_to(study)) for p in study.glob("runs/*/*/eval/probe.json"))
    assert probed == ["runs/midas/seed1", "runs/none/seed1"]
    table = json.loads((study / "eval" / "probe.json").read_text())
    assert list(table) == ["none", "midas"] and all(row["n"] == 1 for row in table.values())
    assert "training seeds 1;" in (study / "eval" / "probe.md").read_text()
    shutil.rmtree(study / "runs" / "midas" / "seed1" / "final")  # a probed run's model gone: its result is reused
    capsys.readouterr()
    assert main(["probe", str(study), *flags, "--run-seeds", "1"]) == 0
    assert "reusing" in capsys.readouterr().out and json.loads((study / "eval" / "probe.json").read_text()) == table

    capsys.readouterr()
    assert main(["probe", str(study), *flags, "--run-seeds", "2"]) == 2
    assert "not among the comparison's seeds [0, 1]" in capsys.readouterr().err
    assert main(["probe", str(run), *flags, "--run-seeds", "0"]) == 2
    assert main(["probe", str(study), *flags, "--run-seeds", "x"]) == 2
