import json
import shutil

import pytest
import torch
from rich.console import Console

from stackwise import checkpoint
from stackwise.train import train

QUIET = Console(quiet=True)


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _losses(run_dir):
    return [(m["step"], m["train_loss"], m.get("val_loss"), m["lr"], m["grad_norm"]) for m in _metrics(run_dir)]


def test_loss_falls_and_run_directory_is_complete(tiny_cfg, tmp_path):
    cfg = tiny_cfg(train__steps=30, eval__every=10)
    result = train(cfg, tmp_path / "run", console=QUIET)
    m = _metrics(tmp_path / "run")
    assert [r["step"] for r in m] == list(range(1, 31))
    vals = [r["val_loss"] for r in m if "val_loss" in r]
    assert len(vals) == 3 and vals[-1] < vals[0] - 0.5
    assert result.final_val_loss == vals[-1]
    for key in ("step", "tokens", "flops", "wall_s", "lr", "train_loss", "depth", "stage"):
        assert key in m[-1]
    assert m[-1]["tokens"] == 30 * 4 * 32 and m[-1]["depth"] == 2
    assert m[-1]["flops"] == 30 * m[0]["flops"]
    run = tmp_path / "run"
    for name in ("config.yaml", "result.json", "final/model.safetensors", "final/config.json",
                 "final/tokenizer.json", "checkpoints/step_0000030/model.safetensors"):
        assert (run / name).is_file(), name
    assert json.loads((run / "final/config.json").read_text())["num_hidden_layers"] == 2


def test_resume_after_interruption_logs_identical_losses(tiny_cfg, tmp_path):
    cfg = tiny_cfg(train__steps=12, checkpoint__every=5, checkpoint__keep=5, train__log_every=3)
    full = tmp_path / "full"
    train(cfg, full, console=QUIET)
    # Simulate a crash just after step 7: keep the step-5 checkpoint and the metrics logged up to then (and past it).
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    for p in checkpoint.list_checkpoints(cut / "checkpoints"):
        if p.name != "step_0000005":
            shutil.rmtree(p)
    lines = (cut / "metrics.jsonl").read_text().splitlines()
    (cut / "metrics.jsonl").write_text("\n".join(ln for ln in lines if json.loads(ln)["step"] <= 7) + "\n")
    shutil.rmtree(cut / "final")
    train(cfg, cut, resume=True, console=QUIET)
    assert _losses(cut) == _losses(full)
    assert [m["flops"] for m in _metrics(cut)] == [m["flops"] for m in _metrics(full)]


def test_grad_accumulation_matches_one_big_batch(tiny_cfg, tmp_path):
    a = train(tiny_cfg(train__steps=4), tmp_path / "a", console=QUIET)
    b = train(tiny_cfg(train__steps=4, train__grad_accum=2), tmp_path / "b", console=QUIET)
    assert b.final_val_loss == pytest.approx(a.final_val_loss, rel=1e-4)


@pytest.mark.parametrize("overrides", [
    {"optim__name": "muon"}, {"optim__name": "adafactor", "train__lr": 3e-2}, {"train__dtype": "bfloat16"},
])
def test_variants_train(tiny_cfg, tmp_path, overrides):
    cfg = tiny_cfg(train__steps=16, eval__every=0, **overrides)
    result = train(cfg, tmp_path / "run", console=QUIET)
    first = _metrics(tmp_path / "run")[0]["train_loss"]
    assert result.final_val_loss < first - 0.3


def test_same_seed_same_run_different_seed_differs(tiny_cfg, tmp_path):
    a = train(tiny_cfg(train__steps=3), tmp_path / "a", console=QUIET)
    b = train(tiny_cfg(train__steps=3), tmp_path / "b", console=QUIET)
    c = train(tiny_cfg(train__steps=3, train__seed=1), tmp_path / "c", console=QUIET)
    assert a.final_val_loss == b.final_val_loss != c.final_val_loss


def test_compile_switch_wraps_blocks_and_keeps_names(tiny_cfg):
    from stackwise import parallel
    from stackwise.model import Transformer
    cfg = tiny_cfg(train__compile=True)
    model = Transformer(cfg.model)
    names = list(model.state_dict())
    parallel.wrap(model, cfg)
    assert list(model.state_dict()) == names
    assert all(block._compiled_call_impl is not None for block in model.layers)
    assert torch.is_tensor(model.layers[0].input_layernorm.weight)
