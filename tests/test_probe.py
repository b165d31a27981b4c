import json

import pytest
import torch
from rich.console import Console

from stackwise.cli import main
from stackwise.config import ModelConfig
from stackwise.evals import probe as P
from stackwise.evals.primitives import Example
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


def test_candidate_scores_equal_a_full_forward_per_candidate():
    """Single-token candidates (scored from the prompt's last position, prompts of different lengths in one
    right-padded batch) and multi-token ones (a sequence per candidate) both equal log p(candidate | prompt) from a
    plain forward pass; the chosen answer follows the scores."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layers=2, d_model=32, n_heads=2, vocab_size=97)).eval()
    examples = [Example("a=1;b=a;b?", "1", ("1", "2", "3")),  # single characters: single tokens
                Example("xyz=12;y?", " 12", (" 12", " 7", "9")),
                Example("q=5?", "5", ("5", "6"))]
    tok = CharTok()
    with torch.no_grad():
        expected = []
        for ex in examples:
            row = []
            for c in ex.candidates:
                ids, n_prompt = P._encode(tok, ex.prompt, c)
                logp = torch.log_softmax(model(torch.tensor([ids[:-1]]))[0], -1)
                row.append(sum(float(logp[pos, ids[pos + 1]]) for pos in range(n_prompt - 1, len(ids) - 1)))
            expected.append(row)
    got = P.candidate_scores(model, tok, examples, pad=0, batch=2)
    for g, e in zip(got, expected):
        assert g == pytest.approx(e, abs=1e-4)
    right = sum(ex.candidates[row.index(max(row))] == ex.answer for ex, row in zip(examples, expected))
    assert P.choice_accuracy(model, tok, examples, pad=0, batch=2) == pytest.approx(right / 3)


def test_minibatches_cover_every_example_once_per_epoch():
    batches = P._minibatches(10, 4, seed=3)
    drawn = [next(batches) for _ in range(5)]  # 20 indices: two epochs
    flat = [i for b in drawn for i in b]
    assert all(len(b) == 4 for b in drawn)
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert flat[:10] != list(range(10))  # shuffled
    again = P._minibatches(10, 4, seed=3)
    assert [next(again) for _ in range(5)] == drawn
    assert next(P._minibatches(10, 16, seed=3)) == list(range(10))  # full batch


def test_probe_command_on_a_tiny_run(tiny_cfg, tmp_path):
    from stackwise.train import train
    run = tmp_path / "run"
    train(tiny_cfg(train__steps=3), run, console=Console(quiet=True))
    assert main(["probe", str(run), "--steps", "4", "--eval-every", "2", "--window", "2", "--seeds", "2",
                 "--n-train", "16", "--n-test", "20", "--lr", "1e-3", "--batch-size", "4"]) == 0
    result = json.loads((run / "eval" / "probe.json").read_text())
    assert result["chance"] == 0.2 and result["late_accuracy"]["n"] == 2 and result["config"]["n_train"] == 16
    assert result["config"]["batch_size"] == 4
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
