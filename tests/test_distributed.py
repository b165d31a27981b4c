"""DDP on CPU (gloo, 2 processes under torchrun) through growth equals one process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="torchrun with gloo")


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _train(args, nproc, env):
    if nproc == 1:
        cmd = [sys.executable, "-m", "stackwise", "train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
               str(29500 + os.getpid() % 1000), "-m", "stackwise", "train", "--train.parallel", "ddp", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_ddp_through_growth_equals_single_process(corpus, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--config", "tiny", "--data.train", str(corpus["train"]), "--data.val", str(corpus["val"]),
              "--model.n_layers", "3", "--growth.method", "midas", "--growth.block_size", "1", "--train.steps", "9",
              "--train.batch_size", "8", "--train.log_every", "1", "--eval.every", "3", "--eval.sample_tokens", "0",
              "--checkpoint.every", "4"]
    _train([*common, "--out", str(tmp_path / "one")], 1, env)
    assert "2 process(es)" in _train([*common, "--out", str(tmp_path / "two")], 2, env).stdout
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert [m["depth"] for m in two] == [m["depth"] for m in one] and one[-1]["depth"] == 3
    for a, b in zip(one, two, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        if "val_loss" in a:
            assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
    # resume the 2-process run from its step-4 checkpoint (between the two growth events) and get the same losses
    import shutil
    ckpts = tmp_path / "two" / "checkpoints"
    for p in ckpts.iterdir():
        if p.name != "step_0000004":
            shutil.rmtree(p)
    _train(["--resume", str(tmp_path / "two")], 2, env)
    resumed = _metrics(tmp_path / "two")
    assert [m["train_loss"] for m in resumed] == pytest.approx([m["train_loss"] for m in two], rel=1e-6)
