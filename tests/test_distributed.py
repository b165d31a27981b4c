"""DDP and FSDP2 on CPU (gloo, 2 processes under torchrun) through growth equal one process with the same global
batch; a killed FSDP run resumes to the same losses: between the growth events as 2 nodes of 1 process each
(torchrun's c10d rendezvous, as on a cluster), and before any growth as 1 process."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="torchrun with gloo, on Linux")

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _cmd(args, nproc, parallel, launcher=()):
    """`python -m stackwise train` for one process; under torchrun (`launcher`: its flags) for more."""
    train = ["-m", "stackwise", "train", "--train.parallel", parallel, *args]
    if nproc == 1 and not launcher:
        return [sys.executable, *train]
    launcher = launcher or ["--nproc_per_node", str(nproc), "--master_port", str(29500 + os.getpid() % 1000)]
    return [sys.executable, "-m", "torch.distributed.run", *launcher, *train]


def _train(args, nproc, parallel="none"):
    proc = subprocess.run(_cmd(args, nproc, parallel), capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _train_on_two_nodes(args, parallel):
    """Two torchrun agents (one per "node", 1 process each) meeting through the c10d rendezvous, as a multi-node
    launch does: ranks 0 and 1 both have LOCAL_RANK 0, so anything keyed on the local rank instead of the global one
    (writing files, loading shards) would show."""
    launch = _cmd(args, 1, parallel, ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d",
                                      "--rdzv-endpoint", f"127.0.0.1:{30500 + os.getpid() % 1000}",
                                      "--rdzv-id", f"stackwise-test-{os.getpid()}"])
    with contextlib.ExitStack() as files:
        logs = [[files.enter_context(tempfile.TemporaryFile("w+")) for _ in ("out", "err")] for _ in range(2)]
        nodes = [subprocess.Popen(launch, stdout=out, stderr=err, text=True, env=ENV) for out, err in logs]
        deadline = time.monotonic() + 300
        # a node that fails ends the test at once: its torchrun peer would wait out a 300 s exit barrier
        while any(n.poll() is None for n in nodes) and all(n.poll() in (None, 0) for n in nodes) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        for node in nodes:
            if node.poll() is None:
                _kill_tree(node, workers=0)
        for f in (f for pair in logs for f in pair):
            f.seek(0)
        outputs = [[f.read() for f in pair] for pair in logs]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, f"a node ended with {node.returncode}: {err[-3000:]}"
    return [out for out, _ in outputs]


def _same_losses(a_run, b_run, rel):
    a, b = _metrics(a_run), _metrics(b_run)
    assert [m["step"] for m in b] == [m["step"] for m in a]
    assert [m["depth"] for m in b] == [m["depth"] for m in a] and a[-1]["depth"] == 3
    for x, y in zip(a, b, strict=True):
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=rel)
        assert y["grad_norm"] == pytest.approx(x["grad_norm"], rel=max(rel, 1e-5))
        if "val_loss" in x:
            assert y["val_loss"] == pytest.approx(x["val_loss"], rel=rel)


def _same_primitives(a_run, b_run):
    """Primitives scored during training (rank 0; under FSDP on the gathered model) agree with one process."""
    path = "eval/primitives_during_training.jsonl"
    a, b = ((run / path).read_text().splitlines() for run in (a_run, b_run))
    assert len(a) == 3
    for x, y in zip(a, b, strict=True):
        x, y = json.loads(x), json.loads(y)
        assert (x["step"], x["depth"]) == (y["step"], y["depth"]) and y["val_loss"] == pytest.approx(x["val_loss"])
        assert {(t, m): r["correct"] for t, v in x["tasks"].items() for m, r in v.items()} == \
            {(t, m): r["correct"] for t, v in y["tasks"].items() for m, r in v.items()}


def _sharded_checkpoint_loads_for_evaluation_and_export(run):
    from stackwise import checkpoint, hf
    from stackwise.evals.runner import models
    from stackwise.model import Transformer

    (name, step, model), = models(run, "latest")  # as `stackwise eval` and `stackwise export` read it
    assert (name, step, model.depth) == ("step_0000009", 9, 3)
    final = hf.load_pretrained(run / "final", model.cfg)  # gathered by rank 0: the whole model
    for a, b in zip(model.state_dict().values(), final.state_dict().values(), strict=True):
        assert (a == b).all()
    with pytest.raises(Exception, match="weights do not match"):
        checkpoint.load_weights(Transformer(model.cfg, n_layers=2), run / "checkpoints" / "step_0000009")


def _state_and_parent(stat):
    """(state, parent pid) from a /proc/PID/stat file; None once the process is gone."""
    try:
        state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
    except (OSError, IndexError):
        return None
    return state, int(ppid)


def _process_tree(pid):
    """pid and its descendants, from /proc (torchrun starts each worker in a session of its own)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        found = _state_and_parent(stat)
        if found is not None and found[0] != "Z":
            children.setdefault(found[1], []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def _alive(pid):
    found = _state_and_parent(Path(f"/proc/{pid}/stat"))
    return found is not None and found[0] != "Z"


def _kill_tree(proc, workers=2):
    """SIGKILL a torchrun launch and every worker under it, as a node failure would, and wait until all are gone."""
    tree = _process_tree(proc.pid)
    assert len(tree) >= 1 + workers, f"expected the torchrun agent and its {workers} workers"
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in tree):
        assert time.monotonic() < deadline, "a worker outlived SIGKILL"
        time.sleep(0.05)


def _keep_only(run, step):
    """Roll a run back to one checkpoint, as if it had been killed right after writing it."""
    for p in (run / "checkpoints").iterdir():
        if p.name != f"step_{step:07d}":
            shutil.rmtree(p)


@pytest.fixture(scope="module")
def common(corpus):
    # 3 layers, MIDAS with b=1, PROP-1 over 9 steps: stages end at steps 1 and 4, so the run grows to depth 2 before
    # step 2 and to depth 3 before step 5; checkpoints at the stage ends (1, 4) and every 4 steps (4, 8), and at 9.
    return ["--config", "tiny", "--data.train", str(corpus["train"]), "--data.val", str(corpus["val"]),
            "--model.n_layers", "3", "--growth.method", "midas", "--growth.block_size", "1", "--train.steps", "9",
            "--train.batch_size", "8", "--train.log_every", "1", "--eval.every", "3", "--eval.sample_tokens", "0",
            "--checkpoint.every", "4", "--eval.primitives_every", "3", "--eval.primitives_n", "4",
            "--eval.primitives_tasks", "copy_random,arithmetic"]


@pytest.fixture(scope="module")
def single(common, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    _train([*common, "--out", str(out)], 1)
    return out


def test_ddp_through_growth_equals_single_process(common, single, tmp_path):
    two = tmp_path / "two"
    assert "2 process(es)" in _train([*common, "--out", str(two)], 2, "ddp").stdout
    _same_losses(single, two, rel=1e-5)
    _same_primitives(single, two)
    # resume the 2-process run from its step-4 checkpoint (between the two growth events): same losses
    _keep_only(two, 4)
    _train(["--resume", str(two)], 2, "ddp")
    _same_losses(single, two, rel=1e-5)


def test_fsdp_through_growth_equals_single_process_and_resumes_after_a_kill(common, single, tmp_path):
    full = tmp_path / "full"
    accum = ["--train.grad_accum", "2"]  # and gradient sync only after the last micro-batch
    _train([*common, *accum, "--out", str(full)], 2, "fsdp")
    _same_losses(single, full, rel=1e-5)
    _same_primitives(single, full)
    step4 = full / "checkpoints" / "step_0000004"
    assert (step4 / "shards" / "index.json").is_file() and not (step4 / "model.safetensors").exists()
    assert sorted(p.name for p in (step4 / "shards").iterdir()) == \
        ["index.json", "rank00000.safetensors", "rank00001.safetensors"]
    _sharded_checkpoint_loads_for_evaluation_and_export(full)

    # A real kill: SIGKILL torchrun and both workers once the step-4 checkpoint is on disk.
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd([*common, *accum, "--out", str(killed)], 2, "fsdp"), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints" / "step_0000004").is_dir():
        assert proc.poll() is None and time.monotonic() < deadline, "the run never wrote its step-4 checkpoint"
        time.sleep(0.02)
    _kill_tree(proc)
    assert not (killed / "final").exists() and _metrics(killed)[-1]["step"] < 9, "the run finished before the kill"
    one_proc = tmp_path / "one-proc"
    shutil.copytree(killed, one_proc)
    _keep_only(killed, 4)  # between the growth events (should the kill have come after step 8's checkpoint)
    _keep_only(one_proc, 1)  # the end of the first stage, before any growth

    # resumed by two "nodes" of one process each (c10d rendezvous): the uninterrupted run (≤ 1e-6)
    logs = _train_on_two_nodes(["--resume", str(killed)], "fsdp")
    assert sum("at step 4 with 2 process(es)" in " ".join(out.split()) for out in logs) == 1  # rank 0 alone logs
    _same_losses(full, killed, rel=1e-6)

    # the 2-process sharded checkpoint from before the first growth, resumed by one process (unsharded), which then
    # grows twice: the same run, to fp32 rounding
    resumed = _train(["--resume", str(one_proc)], 1, "fsdp").stdout
    assert "at step 1 with 1 process(es)" in " ".join(resumed.split())
    _same_losses(single, one_proc, rel=1e-5)


def test_fsdp_bf16_mixed_precision_through_growth(common, single, tmp_path):
    """MixedPrecisionPolicy(bf16 params, fp32 reduce), re-applied at each growth: close to fp32, but not equal."""
    run = tmp_path / "bf16"
    _train([*common, "--out", str(run), "--train.dtype", "bfloat16"], 2, "fsdp")
    a, b = _metrics(single), _metrics(run)
    assert [m["depth"] for m in b] == [m["depth"] for m in a]
    assert [m["train_loss"] for m in b] == pytest.approx([m["train_loss"] for m in a], rel=2e-2)
    assert [m["train_loss"] for m in b] != pytest.approx([m["train_loss"] for m in a], rel=1e-5)


def test_sophia_under_ddp_through_growth_equals_single_process(common, tmp_path):
    """Sophia's Hessian estimate (labels drawn per row of the global batch, gradients all-reduced) is the same on 2
    ranks as on 1, through two growth events and a second estimate after them (steps 1 and 11 of 12)."""
    args = [*common, "--train.steps", "12", "--optim.name", "sophia", "--eval.primitives_every", "0"]
    one, two = tmp_path / "one", tmp_path / "two"
    _train([*args, "--out", str(one)], 1)
    _train([*args, "--out", str(two)], 2, "ddp")
    a, b = _metrics(one), _metrics(two)
    assert [m["step"] for m in b] == [m["step"] for m in a] == list(range(1, 13)) and a[-1]["depth"] == 3
    for x, y in zip(a, b, strict=True):
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-5)


def test_a_user_error_under_torchrun_is_one_line_and_fails_every_rank(common, tmp_path):
    """Both ranks print the CLI's one-line message and the launch fails: the exit code survives parallel.end_process
    (the abort that end_process avoids is too rare to test; docs/distributed.md)."""
    proc = subprocess.run(_cmd([*common, "--train.batch_size", "6", "--train.grad_accum", "2",
                                "--out", str(tmp_path / "run")], 2, "ddp"),
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode != 0
    message = "stackwise: error: train.batch_size: 6 is not divisible by train.grad_accum × processes (2 × 2)"
    assert proc.stderr.count(message) == 2, proc.stderr[-3000:]
    assert not re.search(r'File ".*/stackwise/', proc.stderr), "a traceback through stackwise (torchrun's is fine)"
