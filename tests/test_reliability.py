"""The fast fault suite: nothing executes from a checkpoint, damage is detected and resume falls back to the previous
valid checkpoint with identical losses, resume refuses run-defining changes, bad input gets one line, a run directory
has one writer. The long sweep (random SIGKILLs, every kind of damage, generated bad configs) is benchmarks/faults.py,
whose figures are in docs/reliability.md."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console

from conftest import TINY
from stackwise import checkpoint, rundir
from stackwise import config as config_mod
from stackwise.cli import main
from stackwise.errors import UserError
from stackwise.train import train

# 2 layers grown from 1 (MIDAS, b=1): the growth happens before step 4; checkpoints every 2 steps, all kept
GROW = {"model.n_layers": 2, "growth.method": "midas", "growth.block_size": 1, "checkpoint.every": 2,
        "checkpoint.keep": 10, "eval.sample_tokens": 0}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _cfg(corpus, **extra):
    return config_mod.load(None, {**TINY, **GROW, "data.train": str(corpus["train"]), "data.val": str(corpus["val"]),
                                  **extra})


def _trajectory(run: Path) -> list[tuple]:
    """Everything a run logs except its timings."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"], r.get("val_loss"), r["grad_norm"], r["lr"], r["depth"]) for r in rows]


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses below (OMP_NUM_THREADS=1): bit-identical float reductions
    train(_cfg(corpus), out)
    yield out
    torch.set_num_threads(threads)


def _rolled_back(reference: Path, tmp_path: Path, step: int) -> Path:
    """A copy of the reference run as if killed after writing its checkpoint of `step`."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    checkpoint.rewind(run, step)
    return run


def _safetensors_data_start(path: Path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def _flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


DAMAGES = {
    "mantissa bit in model.safetensors": lambda c: _flip_bit(c / "model.safetensors",
                                                             _safetensors_data_start(c / "model.safetensors")),
    "byte in optimizer.pt": lambda c: _flip_bit(c / "optimizer.pt", (c / "optimizer.pt").stat().st_size // 2, 3),
    "truncated model.safetensors": lambda c: os.truncate(c / "model.safetensors", 100),
    "manifest deleted": lambda c: (c / "manifest.json").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_newest_checkpoint_is_skipped_and_the_resumed_run_is_identical(damage, reference, tmp_path, capsys):
    run = _rolled_back(reference, tmp_path, 8)
    DAMAGES[damage](run / "checkpoints" / "step_0000008")
    train(config_mod.load(run / "config.yaml"), run, resume=True, console=Console(width=1000))
    out = capsys.readouterr().out
    assert "skipping damaged checkpoint" in out and "step_0000008" in out
    assert "resuming from" in out and "step_0000006" in out
    assert _trajectory(run) == _trajectory(reference)


class Payload:
    """Unpickling this creates a file: the proof that a loader ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_no_file_in_a_checkpoint_can_run_code(reference, tmp_path, capsys):
    marker = tmp_path / "pwned"
    run = _rolled_back(reference, tmp_path, 8)
    ckpts = list(reversed(checkpoint.list_checkpoints(run / "checkpoints")))
    for ckpt, name in zip(ckpts, ("trainer.pt", "optimizer.pt", "trainer.pt", "optimizer.pt"), strict=False):
        torch.save({"state": Payload(marker)}, ckpt / name)
        checkpoint.write_manifest(ckpt)  # the manifest agrees: only the loader's safety is left
    (ckpts[-1] / "dcp").mkdir()  # the oldest, as a torch.distributed.checkpoint folder with a pickled .metadata
    import pickle

    (ckpts[-1] / "dcp" / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    checkpoint.write_manifest(ckpts[-1])
    for argv in (["train", "--resume", str(run)], ["eval", str(run), "--checkpoint", "latest", "--n", "1"],
                 ["export", str(run), "--checkpoint", "latest", "--out", str(tmp_path / "hf")],
                 ["eval", str(run), "--checkpoint", "all", "--n", "1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.splitlines()
        assert err[-1].startswith("stackwise: error: ") and all(line.startswith("stackwise: ") for line in err)
    assert not marker.exists()
    with pytest.raises(UserError, match="pickle"):
        checkpoint.read(ckpts[-1])


def test_sharded_checkpoint_round_trips_without_pickle_and_refuses_a_payload(reference, tmp_path):
    import torch.distributed as dist

    from stackwise.model import Transformer
    from stackwise.optim import build_optimizer

    loaded = checkpoint.latest(reference, warn=lambda _: None)
    model = Transformer(loaded.cfg.model, n_layers=loaded.trainer["depth"])
    optimizer = build_optimizer(model, loaded.cfg)
    checkpoint.load_state(loaded, model, optimizer)
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        path = checkpoint.save(tmp_path / "ckpts", 12, model, optimizer, loaded.trainer, loaded.cfg, sharded=True)
    finally:
        dist.destroy_process_group()
    assert sorted(p.name for p in (path / "shards").iterdir()) == ["index.json", "rank00000.safetensors"]
    again = checkpoint.read(path)
    model2 = Transformer(again.cfg.model, n_layers=again.trainer["depth"])
    optimizer2 = build_optimizer(model2, again.cfg)
    checkpoint.load_state(again, model2, optimizer2)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    s1, s2 = (o.state_dict()["optimizers"][0] for o in (optimizer, optimizer2))
    assert s1["param_groups"] == s2["param_groups"]
    assert all(torch.equal(s1["state"][i][k], s2["state"][i][k]) for i in s1["state"] for k in s1["state"][i])

    marker = tmp_path / "pwned"
    torch.save(Payload(marker), path / "shards" / "rank00000.safetensors")
    checkpoint.write_manifest(path)
    with pytest.raises(UserError, match="weights do not match"):
        checkpoint.load_weights(Transformer(again.cfg.model, n_layers=again.trainer["depth"]), path)
    assert not marker.exists()


def test_final_is_complete_or_absent(reference, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    os.rename(run / "final", run / ".tmp-final")  # killed while writing final/
    for argv in (["eval", str(run), "--n", "1"], ["export", str(run), "--out", str(tmp_path / "hf")]):
        assert main(argv) == 2
        assert "no final/ model yet" in capsys.readouterr().err
    os.rename(run / ".tmp-final", run / "final")
    os.truncate(run / "final" / "model.safetensors", 1000)
    assert main(["eval", str(run), "--n", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.safetensors has 1000 bytes" in err
    assert main(["export", str(reference), "--out", str(tmp_path)]) == 2  # never over a folder that is not an export
    assert "is not an earlier export" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--model.d_model", "64"), ("--growth.block_size", "2"),
                                         ("--train.seed", "1"), ("--train.steps", "24"),
                                         ("--data.train", "elsewhere.txt")])
def test_resume_refuses_run_defining_changes_before_writing_anything(flag, value, reference, tmp_path, capsys):
    run = _rolled_back(reference, tmp_path, 6)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(run), flag, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"stackwise: error: {flag[2:]}: the run was trained with") and err.count("\n") == 1
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_resume_refuses_a_run_whose_text_has_changed_before_writing_anything(reference, tmp_path, capsys):
    run = _rolled_back(reference, tmp_path, 6)
    identity = json.loads((run / "data.json").read_text())
    assert set(identity) == {"train", "val"}  # every run records its text by content
    (run / "data.json").write_text(json.dumps({**identity, "train": "0" * 16}))  # as if the file had been edited
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "cannot resume it: the text of its train split" in err and err.count("\n") == 1
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_events_are_trimmed_on_resume_like_metrics(reference, tmp_path):
    growth_events = [json.loads(line) for line in (reference / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in growth_events] == [4]
    for step in (2, 4):  # before the growth; at the boundary (its checkpoint is written before the growth)
        run = _rolled_back(reference, tmp_path / str(step), step)
        train(config_mod.load(run / "config.yaml", {"eval.every": 4}), run, resume=True)  # a cadence may change
        events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
        assert [(e["step"], e["depth"]) for e in events] == [(4, 2)]
        assert _trajectory(run) == _trajectory(reference)


def test_a_real_sigkill_mid_run_resumes_to_identical_losses(corpus, reference, tmp_path):
    run = tmp_path / "killed"
    flags = [x for k, v in {**TINY, **GROW, "checkpoint.every": 1, "data.train": corpus["train"],
                            "data.val": corpus["val"]}.items() for x in (f"--{k}", str(v))]
    proc = subprocess.Popen([sys.executable, "-m", "stackwise", "train", *flags, "--out", str(run)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / ".tmp-step_0000006").exists():  # kill while a checkpoint is being written
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before the kill"
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "final").exists()
    proc = subprocess.run([sys.executable, "-m", "stackwise", "train", "--resume", str(run),
                           "--checkpoint.every", "2"], env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert _trajectory(run) == _trajectory(reference)


@pytest.mark.parametrize("flag, value", [
    ("train.lr", "inf"), ("model.rope_theta", "0"), ("model.rope_theta", "-1"), ("model.norm_eps", "-1"),
    ("model.norm_eps", "nan"), ("train.weight_decay", "inf"), ("model.init_std", "inf"), ("optim.beta1", "2"),
    ("optim.beta2", "nan"), ("optim.eps", "-1"), ("optim.muon_momentum", "nan"), ("train.seed", "-1"),
    ("train.seed", "1000000000000000000000000000000"), ("growth.alpha", "nan"), ("growth.alpha", "1e308"),
    ("growth.stage_fractions", "nan,nan"), ("model.n_kv_heads", "0"), ("train.steps", ".inf"),
])
def test_invalid_values_get_one_line_naming_the_field(flag, value, capsys):
    assert main(["plan", "--config", "midas", f"--{flag}", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"stackwise: error: {flag}: ") and err.count("\n") == 1, err


def test_inputs_found_bad_only_at_run_time_get_one_line(corpus, tmp_path, capsys):
    data = ["--data.train", str(corpus["train"]), "--data.val", str(corpus["val"])]
    bad_yaml = tmp_path / "latin1.yaml"
    bad_yaml.write_bytes("train:\n  steps: 5 # café\n".encode("latin-1"))
    cases = [
        (["--config", str(bad_yaml)], "not UTF-8"),
        (["--config", "tiny", *data, "--model.d_model", "1000000", "--out", str(tmp_path / "a")], "GiB to train"),
        (["--config", "tiny", *data, "--train.lr", "1e6", "--train.warmup_steps", "0", "--out",
          str(tmp_path / "b")], "diverged at step"),
    ]
    for argv, needle in cases:
        assert main(["train", *argv]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "b" / "final").exists()


def test_a_run_directory_has_one_writer_and_bad_paths_are_found_first(reference, corpus, tmp_path, capsys):
    argv = ["train", "--config", "tiny", "--data.train", str(corpus["train"]), "--data.val", str(corpus["val"])]
    busy = tmp_path / "busy"
    claim = rundir.claim(busy, resume=False)
    try:
        assert main([*argv, "--out", str(busy)]) == 2
        assert f"pid {os.getpid()}" in capsys.readouterr().err
    finally:
        claim.release()
    (tmp_path / "file").write_text("x")
    (tmp_path / "ckfile").mkdir()
    (tmp_path / "ckfile" / "checkpoints").write_text("x")
    for out, needle in ((tmp_path / "file", "is a file"), (tmp_path / "file" / "sub", "cannot use"),
                        (tmp_path / "ckfile", "checkpoints is a file"), (reference, "already holds a run")):
        assert main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err


@contextlib.contextmanager
def _tmpfs(path: Path, options: str):
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_read_only_and_full_disks_get_one_line(corpus, tmp_path, capsys):
    argv = ["train", "--config", "tiny", "--data.train", str(corpus["train"]), "--data.val", str(corpus["val"]),
            "--eval.sample_tokens", "0"]
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        assert main([*argv, "--out", str(ro / "run")]) == 2
        assert "cannot use" in capsys.readouterr().err
    with _tmpfs(tmp_path / "full", "size=4m") as full:  # room for about two checkpoints of this model
        assert main([*argv, "--checkpoint.every", "1", "--checkpoint.keep", "10", "--out", str(full / "run")]) == 2
        err = capsys.readouterr().err
        assert "disk full" in err and "earlier checkpoints are kept" in err and err.count("\n") == 1, err
        kept = checkpoint.list_checkpoints(full / "run" / "checkpoints")
        assert kept and all(checkpoint.read(p) for p in kept)
        assert not list((full / "run" / "checkpoints").glob(".tmp-*"))
