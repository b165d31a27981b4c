"""The long fault sweep: SIGKILLs at random moments, damaged files, generated bad configs and bad data files.

    python benchmarks/faults.py [--kills 24] [--configs 80] [--out runs/faults] [--doc docs/reliability.md]

1. Kills. A reference run (tiny MIDAS model growing 1 → 2 → 3 layers, a checkpoint every step) is trained once. Then,
   for each kill, the same run is started and SIGKILLed at a moment drawn at random from one of five kinds: a random
   time, while a checkpoint folder is being written, right after a growth event, while final/ is being written, or
   during a resumed run. It is then continued as a user would (`--resume` if it has a checkpoint, else started again)
   and counts as resumed bit-identically when every logged loss, gradient norm, learning rate and depth equals the
   reference's, the events log holds each growth event once, and final/ verifies.
2. Damage. Copies of the reference, rolled back to step 20, get one kind of damage in their newest checkpoint (or in
   final/). Detected means: the loader refuses that checkpoint with a message naming the file, the run resumes from
   the previous one to the reference's exact losses, and no payload ran.
3. Bad configs. The config's own field list, bounds (config.RANGES) and choices generate invalid values (hypothesis);
   the issue's hand-found cases are always included. Each must end with exit status 2 and one line naming the field.
4. Bad data files: each must end with exit status 2 and one line; a 20 MB text without whitespace must train (with
   bounded time and memory).

Writes the figures and a table per part into --doc (docs/reliability.md) and every case into --out/faults.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from stackwise import checkpoint
from stackwise import config as config_mod
from stackwise.cli import main as cli_main

WORDS = ("the cat dog sat on a mat and ran to house big small red blue green tree under over it was "
         "she he saw her him with of in").split()
RUN = {"model.n_layers": 3, "model.d_model": 64, "model.n_heads": 2, "model.vocab_size": 512,
       "growth.method": "midas", "growth.block_size": 1, "train.steps": 60, "train.batch_size": 8,
       "train.seq_len": 64, "train.warmup_steps": 5, "train.log_every": 1, "eval.every": 10, "eval.batches": 2,
       "eval.sample_tokens": 0, "checkpoint.every": 1, "checkpoint.keep": 3}
ROLLBACK = 40  # the damage part's copies are rolled back to this step


def corpus(root: Path) -> dict[str, Path]:
    rng = random.Random(0)
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, lines in (("train", 6000), ("val", 400)):
        text = "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))) + "." for _ in range(lines))
        paths[split] = root / f"{split}.txt"
        paths[split].write_text(text)
    return paths


class Sweep:
    def __init__(self, out: Path):
        self.out = out
        self.data = corpus(out / "corpus")
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "STACKWISE_CACHE": str(out / "cache"), "COLUMNS": "1000"}
        os.environ.update({"OMP_NUM_THREADS": "1", "STACKWISE_CACHE": str(out / "cache")})
        self.flags = [x for k, v in {**RUN, "data.train": self.data["train"], "data.val": self.data["val"]}.items()
                      for x in (f"--{k}", str(v))]

    def command(self, run: Path, resume: bool = False) -> list[str]:
        base = [sys.executable, "-m", "stackwise", "train"]
        return [*base, "--resume", str(run)] if resume else [*base, *self.flags, "--out", str(run)]

    def train(self, run: Path, resume: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(run, resume), env=self.env, capture_output=True, text=True, timeout=600)

    def continue_run(self, run: Path) -> subprocess.CompletedProcess:
        """What a user does after a crash: resume if there is a checkpoint, else start again."""
        return self.train(run, resume=bool(checkpoint.list_checkpoints(run / "checkpoints")))


def trajectory(run: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"], r.get("val_loss"), r["grad_norm"], r["lr"], r["depth"]) for r in rows]


def same_run(run: Path, reference: Path) -> str | None:
    """None if `run` finished exactly as the reference did, else what differs."""
    if not (run / "result.json").is_file():
        return "did not finish"
    if trajectory(run) != trajectory(reference):
        return "losses differ from the reference"
    events = [json.loads(line)["step"] for line in (run / "events.jsonl").read_text().splitlines()]
    if events != [json.loads(line)["step"] for line in (reference / "events.jsonl").read_text().splitlines()]:
        return f"growth events {events}"
    try:
        checkpoint.verify(run / "final")
    except Exception as e:
        return f"final/ does not verify: {e}"
    return None


# ---------------------------------------------------------------------------------------------------------- kills

def _wait_for(proc: subprocess.Popen, ready, deadline: float) -> bool:
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def _events(run: Path) -> int:
    path = run / "events.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def _in_flight(run: Path) -> str:
    """What the killed run was doing, read from its directory."""
    ckpts = run / "checkpoints"
    if (run / ".tmp-final").exists() or (run / ".old-final").exists():
        return "writing final/"
    if ckpts.is_dir() and any(p.name.startswith(".tmp-") for p in ckpts.iterdir()):
        return "writing a checkpoint"
    if not (run / "metrics.jsonl").is_file():
        return "starting (no step yet)"
    last = trajectory(run)[-1] if (run / "metrics.jsonl").read_text().strip() else None
    return f"training (last logged step {last[0] if last else 0}, depth {last[5] if last else 1})"


def _kill_once(sweep: Sweep, run: Path, kind: str, i: int, rng: random.Random,
               window: tuple[float, float]) -> str | None:
    """Start the run (or, for "during a resumed run", kill it once and resume it), SIGKILL it at a moment of `kind`;
    return what it was doing then, or None if it finished first."""
    shutil.rmtree(run, ignore_errors=True)
    if kind == "during a resumed run":
        first = subprocess.Popen(sweep.command(run), env=sweep.env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        _wait_for(first, lambda: len(checkpoint.list_checkpoints(run / "checkpoints")) >= 2, time.monotonic() + 300)
        time.sleep(rng.uniform(0, 0.5))
        first.kill()
        first.wait()
        if (run / "result.json").is_file() or not checkpoint.list_checkpoints(run / "checkpoints"):
            return None
    proc = subprocess.Popen(sweep.command(run, resume=kind == "during a resumed run"), env=sweep.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    if kind == "random time":
        time.sleep(rng.uniform(*window))
    elif kind == "checkpoint write":
        step = rng.randint(2, RUN["train.steps"] - 1)
        _wait_for(proc, lambda: (run / "checkpoints" / f".tmp-step_{step:07d}").exists(), deadline)
    elif kind == "after growth":
        k = 1 + (i // 5) % 2
        _wait_for(proc, lambda: _events(run) >= k, deadline)
    elif kind == "final write":
        _wait_for(proc, lambda: (run / ".tmp-final").exists(), deadline)
    else:
        time.sleep(rng.uniform(0.5 * window[0], window[1]))
    finished = proc.poll() is not None
    proc.kill()
    proc.wait()
    return None if finished else _in_flight(run)


def kills(sweep: Sweep, reference: Path, n: int, rng: random.Random, window: tuple[float, float]) -> list[dict]:
    kinds = ["random time", "checkpoint write", "after growth", "final write", "during a resumed run"]
    cases = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        run = sweep.out / "kills" / f"{i:02d}"
        for _attempt in range(5):  # a kill that comes after the run finished is no kill: draw again
            state = _kill_once(sweep, run, kind, i, rng, window)
            if state is not None:
                break
        resumed = sweep.continue_run(run)
        problem = None if resumed.returncode == 0 else f"continuing failed: {resumed.stderr.strip()[-300:]}"
        problem = problem or same_run(run, reference)
        if state is None:
            problem = "every kill came after the run had finished"
        cases.append({"kind": kind, "killed_while": state, "ok": problem is None, "problem": problem})
        print(f"kill {i:2d} ({kind}; {state}): {'ok' if problem is None else problem}", flush=True)
    return cases


# --------------------------------------------------------------------------------------------------------- damage

class Payload:
    """Unpickling this creates a file: proof that a loader ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 1 << bit
    path.write_bytes(bytes(data))


def _tensor_data(path: Path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def _resave_payload(ckpt: Path, name: str, marker: Path) -> None:
    torch.save({"payload": Payload(marker)}, ckpt / name)
    checkpoint.write_manifest(ckpt)  # a consistent manifest: only the loader's safety stands in the way


def _legacy_dcp(ckpt: Path, marker: Path) -> None:
    (ckpt / "dcp").mkdir()
    (ckpt / "dcp" / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    checkpoint.write_manifest(ckpt)


def _sharded(ckpt: Path) -> None:
    """Replace a checkpoint by the same state in the sharded format (one process group of one rank)."""
    import torch.distributed as dist

    from stackwise.model import Transformer
    from stackwise.optim import build_optimizer

    loaded = checkpoint.read(ckpt)
    model = Transformer(loaded.cfg.model, n_layers=loaded.trainer["depth"])
    optimizer = build_optimizer(model, loaded.cfg)
    checkpoint.load_state(loaded, model, optimizer)
    rng = loaded.trainer.pop("rng")
    dist.init_process_group("gloo", store=dist.FileStore(str(ckpt.parent / ".store"), 1), rank=0, world_size=1)
    try:
        saved_rng = checkpoint.rng_state()
        checkpoint.set_rng_state(rng)  # save() records the current RNG: the checkpoint's own
        shutil.rmtree(ckpt)
        checkpoint.save(ckpt.parent, loaded.trainer["step"], model, optimizer, loaded.trainer, loaded.cfg,
                        sharded=True)
        checkpoint.set_rng_state(saved_rng)
    finally:
        dist.destroy_process_group()
        (ckpt.parent / ".store").unlink(missing_ok=True)


CHECKPOINT_DAMAGES = {
    "one mantissa bit flipped in model.safetensors": ("model.safetensors",
                                                       lambda c, m: _flip(c / "model.safetensors",
                                                                          _tensor_data(c / "model.safetensors") + 8)),
    "a byte of the safetensors header changed": ("model.safetensors",
                                                 lambda c, m: _flip(c / "model.safetensors", 20, 1)),
    "one byte flipped in optimizer.pt": ("optimizer.pt",
                                         lambda c, m: _flip(c / "optimizer.pt", (c / "optimizer.pt").stat().st_size
                                                            // 2, 4)),
    "one byte flipped in trainer.pt": ("trainer.pt", lambda c, m: _flip(c / "trainer.pt", 600, 2)),
    "model.safetensors truncated to half": ("model.safetensors",
                                            lambda c, m: os.truncate(c / "model.safetensors",
                                                                     (c / "model.safetensors").stat().st_size // 2)),
    "optimizer.pt emptied": ("optimizer.pt", lambda c, m: os.truncate(c / "optimizer.pt", 0)),
    "trainer.pt deleted": ("trainer.pt", lambda c, m: (c / "trainer.pt").unlink()),
    "manifest.json deleted": ("manifest.json", lambda c, m: (c / "manifest.json").unlink()),
    "manifest.json garbage": ("manifest.json", lambda c, m: (c / "manifest.json").write_text("{not json")),
    "config.yaml edited (d_model)": ("config.yaml", lambda c, m: (c / "config.yaml").write_text(
        (c / "config.yaml").read_text().replace("d_model: 64", "d_model: 128"))),
    "an unknown file added": ("extra.bin", lambda c, m: (c / "extra.bin").write_bytes(b"\0" * 10)),
    "trainer.pt replaced by a pickle payload (manifest rewritten)": ("trainer.pt",
                                                                     lambda c, m: _resave_payload(c, "trainer.pt", m)),
    "optimizer.pt replaced by a pickle payload (manifest rewritten)": ("optimizer.pt",
                                                                       lambda c, m: _resave_payload(c, "optimizer.pt",
                                                                                                    m)),
    "dcp/.metadata pickle payload (the old sharded format)": ("dcp", _legacy_dcp),
    "sharded: one bit flipped in a shard": ("rank00000.safetensors", lambda c, m: (
        _sharded(c), _flip(c / "shards" / "rank00000.safetensors",
                           _tensor_data(c / "shards" / "rank00000.safetensors") + 4))),
    "sharded: shard replaced by a pickle payload (manifest rewritten)": ("rank00000.safetensors", lambda c, m: (
        _sharded(c), torch.save(Payload(m), c / "shards" / "rank00000.safetensors"), checkpoint.write_manifest(c))),
    "sharded: index.json garbage (manifest rewritten)": ("index.json", lambda c, m: (
        _sharded(c), (c / "shards" / "index.json").write_text('{"format": "x"}'), checkpoint.write_manifest(c))),
}


def _rolled_back(reference: Path, run: Path, step: int) -> Path:
    """A copy of the reference, as if killed right after its newest checkpoint at or before `step`."""
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(reference, run)
    checkpoint.rewind(run, max(int(p.name[5:]) for p in checkpoint.list_checkpoints(run / "checkpoints")
                               if int(p.name[5:]) <= step))
    return run


def _one_line(proc) -> bool:
    lines = proc.stderr.strip().splitlines()
    return proc.returncode == 2 and bool(lines) and lines[-1].startswith("stackwise: error: ") and \
        "Traceback" not in proc.stderr


def damages(sweep: Sweep, reference: Path) -> list[dict]:
    cases = []
    for kind, (names, damage) in CHECKPOINT_DAMAGES.items():
        run = _rolled_back(reference, sweep.out / "damage" / f"{len(cases):02d}", ROLLBACK)
        marker = run / "PAYLOAD-RAN"
        newest = checkpoint.list_checkpoints(run / "checkpoints")[-1]
        damage(newest, marker)
        # a sharded copy of the previous checkpoint is what resume falls back to in the sharded kinds: fine either way
        proc = sweep.train(run, resume=True)
        problems = []
        if "skipping damaged checkpoint" not in proc.stdout or names not in proc.stdout:
            problems.append("no warning naming the file")
        if proc.returncode != 0:
            problems.append(f"resume failed: {proc.stderr.strip()[-200:]}")
        elif (p := same_run(run, reference)) is not None:
            problems.append(p)
        if marker.exists():
            problems.append("THE PAYLOAD RAN")
        cases.append({"damage": kind, "ok": not problems, "problem": "; ".join(problems) or None})
        print(f"damage: {kind}: {problems or 'ok'}", flush=True)
    final_damages = {
        "final/model.safetensors truncated": lambda f: os.truncate(f / "model.safetensors", 1000),
        "final/ half-written (killed before its rename)": lambda f: os.rename(f, f.with_name(".tmp-final")),
        "final/config.json edited": lambda f: (f / "config.json").write_text("{}"),
    }
    for kind, damage in final_damages.items():
        run = sweep.out / "damage" / f"{len(cases):02d}"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(reference, run)
        damage(run / "final")
        results = [subprocess.run([sys.executable, "-m", "stackwise", *argv], env=sweep.env, capture_output=True,
                                  text=True, timeout=300)
                   for argv in (["eval", str(run), "--n", "2", "--tasks", "arithmetic"],
                                ["export", str(run), "--out", str(run / "hf")])]
        ok = all(_one_line(r) for r in results)
        cases.append({"damage": kind, "ok": ok,
                      "problem": None if ok else " | ".join(r.stderr.strip()[-200:] for r in results)})
        print(f"damage: {kind}: {'ok' if ok else cases[-1]['problem']}", flush=True)
    return cases


# ---------------------------------------------------------------------------------------------------- bad configs

HAND_FOUND = [("train.lr", "inf"), ("train.lr", "1e6"), ("model.rope_theta", "0"), ("model.rope_theta", "-1"),
              ("model.norm_eps", "-1"), ("model.norm_eps", "nan"), ("train.weight_decay", "inf"),
              ("model.init_std", "inf"), ("optim.beta1", "2"), ("optim.beta2", "nan"), ("optim.eps", "-1"),
              ("optim.muon_momentum", "nan"), ("train.seed", "-1"), ("train.seed", str(10**30)),
              ("growth.alpha", "nan"), ("growth.alpha", "1e308"), ("growth.stage_fractions", "nan,nan"),
              ("model.d_model", "1000000"), ("model.n_kv_heads", "0")]


def invalid_values():
    """A hypothesis strategy of (field, invalid value as typed on the command line), from the config's own fields."""
    from hypothesis import strategies as st

    cfg = config_mod.Config()
    per_field = []
    for key, (_, typ) in config_mod.fields_of(cfg).items():
        inner = config_mod._optional_of(typ) or typ
        options = []
        rng = config_mod.RANGES.get(key)
        if key in config_mod.CHOICES:
            options.append(st.text("abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=8).filter(
                lambda v, k=key: v not in config_mod.CHOICES[k] and v not in ("none", "null", "true", "false",
                                                                             "yes", "no", "on", "off")))
        if inner is bool:
            options.append(st.sampled_from(["maybe", "2", "-1", "0.5", "[1]"]))
        if inner in (int, float) or typing_list(inner):
            options.append(st.sampled_from(["nan", ".nan", "inf", ".inf", "-.inf", "abc", "[1, 2]", "{a: 1}"]))
            if inner is int:
                fractional = st.floats(0.1, 1e6, allow_subnormal=False).filter(lambda v: not v.is_integer())
                options.append(fractional.map(repr))
        if rng is not None:
            below = None if rng.lo is None else rng.lo - (0 if rng.lo_open else (1 if inner is int else 1e-3))
            above = None if rng.hi is None else rng.hi + (0 if rng.hi_open else (1 if inner is int else 1e-3))
            if inner is int:
                if below is not None:
                    options.append(st.integers(max_value=int(below), min_value=int(below) - 10**6).map(str))
                if above is not None:
                    options.append(st.integers(min_value=int(above), max_value=int(above) + 10**6).map(str))
            else:
                if below is not None:
                    options.append(st.floats(max_value=below, min_value=below - 1e6, allow_subnormal=False).map(repr))
                if above is not None:
                    options.append(st.floats(min_value=above, max_value=above + 1e6, allow_subnormal=False).map(repr))
        if key in ("data.train", "data.val", "data.tokenizer"):
            options.append(st.text("abcdef", min_size=3, max_size=8).map(lambda v: f"/no/such/{v}.txt"))
        if key == "eval.primitives_tasks":
            options.append(st.text("xyz", min_size=2, max_size=5))
        if options:
            per_field.append(st.tuples(st.just(key), st.one_of(*options)))
    cross = st.sampled_from([("model.n_heads", "3"), ("growth.block_size", "4"), ("train.grad_accum", "3"),
                             ("model.vocab_size", "100"), ("train.seq_len", "100000"), ("train.device", "cuda"),
                             ("growth.stage_fractions", "0.5,0.5,0.5"), ("model.n_kv_heads", "3")])
    return st.one_of(*per_field, cross)


def typing_list(t) -> bool:
    import typing

    return typing.get_origin(t) is list


def one_config(sweep: Sweep, key: str, value: str, where: Path) -> dict:
    argv = ["train", "--config", "tiny", "--data.train", str(sweep.data["train"]), "--data.val",
            str(sweep.data["val"]), "--model.n_layers", "3", "--growth.method", "midas", "--growth.block_size", "1",
            "--train.steps", "20", "--train.warmup_steps", "0", "--eval.sample_tokens", "0",
            f"--{key}", value, "--out", str(where)]
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = cli_main(argv)
            except SystemExit as e:  # argparse's own errors (e.g. a value that looks like a flag)
                code = e.code
    except BaseException as e:  # a traceback: the failure this sweep looks for
        return {"field": key, "value": value, "ok": False, "problem": f"{type(e).__name__}: {e}"[:300]}
    lines = err.getvalue().strip().splitlines()
    ok = code == 2 and len(lines) == 1 and lines[0].startswith("stackwise: error: ")
    return {"field": key, "value": value, "ok": ok, "exit": code, "message": lines[-1] if lines else None,
            "problem": None if ok else f"exit {code}: {err.getvalue().strip()[-300:]}"}


def configs(sweep: Sweep, n: int) -> list[dict]:
    from hypothesis import HealthCheck, given, settings

    cases = [one_config(sweep, k, v, sweep.out / "configs" / f"hand{i}") for i, (k, v) in enumerate(HAND_FOUND)]
    generated = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(invalid_values())
    def check(case):
        key, value = case
        generated.append(one_config(sweep, key, value, sweep.out / "configs" / f"gen{len(generated)}"))

    check()
    for case in cases + generated:
        if not case["ok"]:
            print(f"config {case['field']}={case['value']!r}: {case['problem']}", flush=True)
    return cases + generated


# ------------------------------------------------------------------------------------------------------ bad data

def bad_data(sweep: Sweep) -> list[dict]:
    root = sweep.out / "bad-data"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 1000)
    (root / "bad.jsonl").write_text('{"text": "fine"}\n{not json\n')
    (root / "nofield.jsonl").write_text('{"body": "no text field"}\n')
    (root / "list.jsonl").write_text('["a", "b"]\n')
    (root / "empty.txt").write_text("")
    (root / "short.txt").write_text("too short")
    (root / "nothing").mkdir()
    (root / "nothing" / "a.csv").write_text("a,b\n")
    (root / "table.csv").write_text("a,b\n")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 100)
    (root / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    cases = [("a non-UTF-8 .txt", ["--data.train", str(root / "latin1.txt")]),
             ("a .jsonl line that is not JSON", ["--data.train", str(root / "bad.jsonl")]),
             ("a .jsonl without the text field", ["--data.train", str(root / "nofield.jsonl")]),
             ("a .jsonl row that is not an object", ["--data.train", str(root / "list.jsonl")]),
             ("an empty .txt", ["--data.train", str(root / "empty.txt")]),
             ("a text shorter than one window", ["--data.val", str(root / "short.txt")]),
             ("a folder without .txt/.jsonl files", ["--data.train", str(root / "nothing")]),
             ("an unsupported file type", ["--data.train", str(root / "table.csv")]),
             ("binary bytes in a .txt", ["--data.train", str(root / "binary.txt")]),
             ("a tokenizer.json that is not one", ["--data.tokenizer", str(root / "tokenizer.json")]),
             ("a missing file", ["--data.val", str(root / "missing.txt")])]
    results = []
    for i, (kind, flags) in enumerate(cases):
        argv = ["train", "--config", "tiny", "--data.train", str(sweep.data["train"]), "--data.val",
                str(sweep.data["val"]), "--train.steps", "4", "--eval.sample_tokens", "0", *flags,
                "--out", str(root / f"run{i}")]
        proc = subprocess.run([sys.executable, "-m", "stackwise", *argv], env=sweep.env, capture_output=True,
                              text=True, timeout=600)
        ok = _one_line(proc) and proc.stderr.strip().count("\n") == 0
        results.append({"data": kind, "ok": ok, "message": proc.stderr.strip().splitlines()[-1:] or None,
                        "problem": None if ok else proc.stderr.strip()[-300:]})
        print(f"data: {kind}: {'ok' if ok else results[-1]['problem']}", flush=True)
    # pathological but valid: 20 MB of letters and digits without a single whitespace character
    rng = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    (root / "nowhitespace.txt").write_text("".join(rng.choices(alphabet, k=20 * 2**20)))
    argv = ["train", "--config", "tiny", "--data.train", str(root / "nowhitespace.txt"), "--data.val",
            str(sweep.data["val"]), "--train.steps", "4", "--eval.sample_tokens", "0", "--out", str(root / "big")]
    t0 = time.monotonic()
    with (root / "big.err").open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "stackwise", *argv], stdout=subprocess.DEVNULL, stderr=err,
                                env={**sweep.env, "STACKWISE_CACHE": str(root / "cache")})
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    seconds, peak = time.monotonic() - t0, usage.ru_maxrss / 2**20  # GiB (ru_maxrss is in KiB on Linux)
    results.append({"data": "20 MB without whitespace (valid: must train)", "ok": code == 0,
                    "seconds": round(seconds, 1), "peak_gib": round(peak, 2),
                    "problem": None if code == 0 else (root / "big.err").read_text().strip()[-300:]})
    print(f"data: 20 MB without whitespace: exit {code} in {seconds:.0f} s, peak {peak:.2f} GiB", flush=True)
    return results


# ---------------------------------------------------------------------------------------------------------- report

def figure(cases: list[dict]) -> str:
    ok = sum(c["ok"] for c in cases)
    return f"{ok}/{len(cases)} ({100 * ok / len(cases):.0f}%)"


def write_doc(doc: Path, results: dict, command: str) -> None:
    k, d, c, b = results["kills"], results["damages"], results["configs"], results["data"]
    start, end = "<!-- faults:begin -->", "<!-- faults:end -->"
    lines = [start, "", f"Command: `{command}` ({results['date']}, {results['seconds'] / 60:.0f} min on the 2-core CPU "
             "machine).", "",
             "| part | figure |", "|---|---|",
             f"| SIGKILLs resumed bit-identically / tried | {figure(k)} |",
             f"| damaged files detected (refused, fallback to the previous checkpoint with identical losses, no code "
             f"run) / tried | {figure(d)} |",
             f"| invalid configs with exit 2 and one line / tried | {figure(c)} |",
             f"| bad data files with exit 2 and one line (and the pathological file trained) / tried | {figure(b)} |",
             "", "Kills, by kind and by what the run was doing when it died:", "",
             "| kind | killed while | resumed bit-identically |", "|---|---|---|"]
    lines += [f"| {x['kind']} | {x['killed_while']} | {'yes' if x['ok'] else 'NO: ' + str(x['problem'])} |"
              for x in k]
    lines += ["", "Damage:", "", "| damage | detected |", "|---|---|"]
    lines += [f"| {x['damage']} | {'yes' if x['ok'] else 'NO: ' + str(x['problem'])} |" for x in d]
    by_field: dict[str, list[dict]] = {}
    for x in c:
        by_field.setdefault(x["field"], []).append(x)
    lines += ["", f"Invalid configs: {len(c)} cases over {len(by_field)} fields ({len(HAND_FOUND)} hand-found, the "
              "rest generated by hypothesis from the config's fields, bounds and choices). Failures, if any:", ""]
    lines += [f"- `{x['field']} {x['value']}`: {x['problem']}" for x in c if not x["ok"]] or ["- none"]
    lines += ["", "Examples of the one-line messages:", ""]
    lines += [f"- `--{x['field']} {x['value']}` → `{x['message']}`" for x in c[:len(HAND_FOUND)] if x["ok"]][:8]
    lines += ["", "Bad data files:", "", "| input | result |", "|---|---|"]
    for x in b:
        extra = f" ({x['seconds']} s, peak {x['peak_gib']} GiB)" if "seconds" in x else ""
        msg = x.get("message")
        result = ("ok" + extra + (f": `{msg[0]}`" if msg else "")) if x["ok"] else "NO: " + str(x["problem"])
        lines.append(f"| {x['data']} | {result} |")
    lines += ["", end]
    block = "\n".join(lines).replace(str(Path(results["out"]).resolve()) + "/", results["out"].rstrip("/") + "/")
    text = doc.read_text() if doc.is_file() else ""
    if start in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text + ("\n" if text else "") + block + "\n"
    doc.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=25)
    ap.add_argument("--configs", type=int, default=80, help="generated invalid configs (the hand-found ones are added)")
    ap.add_argument("--out", default="runs/faults")
    ap.add_argument("--doc", default="docs/reliability.md")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default="kills,damages,configs,data")
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sweep = Sweep(out)
    reference = out / "reference"
    if not (reference / "result.json").is_file():
        shutil.rmtree(reference, ignore_errors=True)
        proc = subprocess.Popen(sweep.command(reference), env=sweep.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        _wait_for(proc, lambda: (reference / "metrics.jsonl").is_file(), t0 + 600)
        first_step = time.monotonic() - t0
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        (out / "window.json").write_text(json.dumps([first_step, time.monotonic() - t0]))
    window = tuple(json.loads((out / "window.json").read_text()))
    print(f"reference run: first step after {window[0]:.1f} s, done after {window[1]:.1f} s", flush=True)
    results_path = out / "faults.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results["out"] = args.out  # as given (relative to the repository by default), for the paths in the doc
    parts = args.parts.split(",")
    rng = random.Random(args.seed)
    steps = {"kills": lambda: kills(sweep, reference, args.kills, rng, window),
             "damages": lambda: damages(sweep, reference), "configs": lambda: configs(sweep, args.configs),
             "data": lambda: bad_data(sweep)}
    seconds = results.get("part_seconds", {})
    for part, run_part in steps.items():
        if part in parts:  # each part is saved as soon as it is done: `--parts` reruns only what is missing
            t0 = time.monotonic()
            results[part] = run_part()
            seconds[part] = time.monotonic() - t0
            results.update(date=time.strftime("%Y-%m-%d"), part_seconds=seconds, seconds=sum(seconds.values()))
            results_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    if all(p in results for p in ("kills", "damages", "configs", "data")):
        write_doc(Path(args.doc), results, "python benchmarks/faults.py")
    for part in ("kills", "damages", "configs", "data"):
        if part in results:
            print(f"{part}: {figure(results[part])}")
    if any(not c["ok"] for part in ("kills", "damages", "configs", "data") for c in results.get(part, [])):
        sys.exit(1)


if __name__ == "__main__":
    main()
