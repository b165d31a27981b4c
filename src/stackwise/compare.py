"""`stackwise compare`: run several methods × seeds on identical data and summarise them honestly.

Method specs (`--methods`) are comma-separated; each is a name optionally followed by `:field=value` overrides:

    none                                   the fixed-depth baseline (always the reference; added if missing)
    midas                                  growth.method midas, everything else from the config
    midas:growth.alpha=2                   MIDAS with PROP-2, beside PROP-1 in the same comparison
    shallow:model.n_layers=4               a label that is not a method runs the baseline path with its overrides
    lidas:seeds=2                          `seeds=N` caps that arm at N seeds (the cheaper arms of a long study)
    midas:growth.stage_fractions=[0.1,0.3,0.6]   a value in [brackets] may hold commas and colons (a list, a
                                           data.mix); the brackets are dropped

Each arm × seed is its own `python -m stackwise train` process under OUT/runs/<arm>/seed<S>/, so a crash loses one
run; a finished run (result.json present) is reused when the command is repeated, and an interrupted one resumes
from its checkpoint. Everything not overridden is identical across arms, and seed S gives every arm the same data
order. `--equal-compute` adds the No-Train-No-Gain baseline: the full model for T / (fastest predicted total-FLOPs
speedup among the growth arms) steps with its own, fully decayed schedule.

`--jobs N` trains N runs at once (default 1), still starting them in seed-major order. On a CPU host each run gets
an equal share of the threads (OMP_NUM_THREADS, else the CPU count, divided by N): small models use many threads
poorly, so two one-thread runs on two cores do more work per second than one two-thread run
(docs/benchmarks.md). On a host with several GPUs each concurrent run gets its own GPU (CUDA_VISIBLE_DEVICES). The
comparison's calibration pass still runs alone, after training, so calibrated time is unaffected.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackwise import config as config_mod
from stackwise import growth, operators, report
from stackwise.errors import UserError
from stackwise.report import BASELINE, EQUAL_COMPUTE, FAILED


@dataclass
class Arm:
    label: str
    overrides: dict[str, str] = field(default_factory=dict)
    max_seeds: int | None = None  # None: every seed of the comparison


def _split(text: str, sep: str) -> list[str]:
    """`text` split at each `sep` outside [brackets]."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if depth < 0:
            raise UserError(f"--methods: unbalanced ']' in '{text}'")
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise UserError(f"--methods: unbalanced '[' in '{text}'")
    return parts + [text[start:]]


def parse_methods(text: str) -> list[Arm]:
    arms = []
    for spec in (s.strip() for s in _split(text, ",")):
        if not spec:
            continue
        name, *pairs = _split(spec, ":")
        overrides, max_seeds = {}, None
        if name in operators.methods():
            overrides["growth.method"] = name
        elif not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise UserError(f"--methods: bad label '{name}' (letters, digits, _ . - only)")
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if key == "seeds" and sep:
                if not value.isdigit() or int(value) < 1:
                    raise UserError(f"--methods: seeds={value} in '{spec}' must be a positive integer")
                max_seeds = int(value)
                continue
            if not sep or "." not in key:
                raise UserError(f"--methods: '{pair}' in '{spec}' is not field=value (e.g. growth.alpha=2)")
            overrides[key] = value[1:-1] if value.startswith("[") and value.endswith("]") else value
        overrides.setdefault("growth.method", BASELINE)
        label = ":".join([name, *(p for p in pairs if not p.startswith("seeds="))]).replace("[", "").replace("]", "")
        label = re.sub(r"[^A-Za-z0-9_.-]+", "-", label.replace(":", "_").replace("=", "-"))  # one path component
        arms.append(Arm(label, overrides, max_seeds))
    if len({a.label for a in arms}) != len(arms):
        raise UserError("--methods: the same method spec appears twice")
    if not any(a.label == BASELINE for a in arms):
        arms.insert(0, Arm(BASELINE, {"growth.method": BASELINE}))
    return arms


def arm_config(base: Path | str | None, arm: Arm, common: dict[str, str]) -> config_mod.Config:
    """An arm's config. With init.from (grow an existing checkpoint), a fixed-depth arm continues the checkpoint at its
    own depth: a shared model.n_layers is the growth arms' target, not its (unless the arm sets one itself)."""
    values = {**common, **arm.overrides}
    if (values.get("init.from") or values.get("init.checkpoint")) and values.get("growth.method") == BASELINE \
            and "model.n_layers" not in arm.overrides:
        values.pop("model.n_layers", None)
    return config_mod.load(base, values)


def equal_compute_arm(base: Path | str | None, arms: list[Arm], common: dict[str, str]) -> Arm:
    """The full model for T / (best predicted total-FLOPs speedup among growth arms) steps, its own schedule."""
    best = 1.0
    for arm in arms:
        cfg = arm_config(base, arm, common)
        best = max(best, growth.speedup(cfg, growth.plan(cfg))["total_flops"])
    ref = arm_config(base, Arm(BASELINE, {"growth.method": BASELINE}), common)
    steps = max(1, round(ref.train.steps / best))
    warmup = min(ref.train.warmup_steps, steps // 2)
    return Arm(EQUAL_COMPUTE, {"growth.method": BASELINE, "train.steps": str(steps),
                               "train.warmup_steps": str(warmup)})


def run_dir(out: Path, arm: Arm, seed: int) -> Path:
    return out / "runs" / arm.label / f"seed{seed}"


def check_reusable(run: Path, cfg: config_mod.Config, known: dict | None = None) -> None:
    """A finished run is reused only if it trained exactly what this arm asks for: a recipe edited since (or a run
    copied in from another comparison), or text changed since, is refused with one line rather than silently
    reported under this arm. `known`: the text fingerprints taken so far (data.check_identity)."""
    saved = run / "config.yaml"
    if not saved.is_file():
        raise UserError(f"{run}: finished run without config.yaml; cannot tell what it trained (move it away)")
    diffs = config_mod.defining_differences(config_mod.load(saved, saved=True), cfg)
    if diffs:
        key, old, new = diffs[0]
        more = f" (and {len(diffs) - 1} more fields)" if len(diffs) > 1 else ""
        raise UserError(f"{run}: finished run trained with {key} {old!r} but this arm asks for {new!r}{more}; "
                        "move it away or use another --out")
    from stackwise import data as data_mod  # (here: `stackwise report` imports this module and needs no data code)

    data_mod.check_identity(run, cfg, "reuse", known)


def job_env(jobs: int, slot: int, environ: dict[str, str], gpus: int) -> dict[str, str]:
    """The environment of the run in job slot `slot` (0..jobs-1) of `jobs` concurrent runs: the CPU threads split
    evenly and, with several GPUs, one GPU per slot. One job keeps the environment as it is."""
    env = dict(environ)
    if jobs == 1:
        return env
    threads = int(environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1
    env["OMP_NUM_THREADS"] = str(max(1, threads // jobs))
    if gpus > 1:
        visible = [d for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()] or \
            [str(i) for i in range(gpus)]
        env["CUDA_VISIBLE_DEVICES"] = visible[slot % len(visible)]
    return env


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def ensure_run(out: Path, base: Path | str | None, arm: Arm, seed: int, common: dict[str, str], log=print,
               plugins: list[str] = (), env: dict[str, str] | None = None) -> Path:
    """Train one arm × seed in its own process unless it already finished; resume it if it was interrupted. A failed
    attempt leaves failed.json in the run directory (read by the report); a later success removes it."""
    run = run_dir(out, arm, seed)
    if (run / "result.json").is_file():
        log(f"reusing {run}")
        return run
    flags = [x for k, v in {**common, **arm.overrides, "train.seed": str(seed)}.items() for x in (f"--{k}", str(v))]
    cmd = [sys.executable, "-m", "stackwise", "train", *(x for p in plugins for x in ("--plugin", p))]
    if (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("step_*")):
        cmd += ["--resume", str(run), *flags]
    else:
        cmd += [*(["--config", str(base)] if base else []), "--out", str(run), *flags]
    log(f"training {arm.label} seed {seed}: {' '.join(cmd[2:])}")
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"(no message; exit code {proc.returncode})"]
        error = tail[0].removeprefix("stackwise: error: ")
        log(f"run failed: {run} ({error})")
        run.mkdir(parents=True, exist_ok=True)
        config_mod.write_atomic(run / FAILED, json.dumps({"returncode": proc.returncode, "error": error}) + "\n")
    else:
        (run / FAILED).unlink(missing_ok=True)
    return run


def run(config: str | None, methods: str, seeds: int, equal_compute: bool, out: Path, common: dict[str, str],
        command: str, log=print, plugins: list[str] = (), jobs: int = 1) -> list[dict[str, Any]]:
    """Train every arm × seed (reusing finished runs), then build the report. Returns the summary rows."""
    if config:
        config_mod.resolve_recipe(config)  # fail early on a missing recipe; keep the name as the user wrote it
    base = config
    arms = parse_methods(methods)
    for arm in arms:  # validate every arm's config before the first hour of training
        arm_config(base, arm, common)
    if equal_compute:
        arms.append(equal_compute_arm(base, arms, common))
    known: dict = {}  # each distinct text is fingerprinted once, however many finished runs share it
    for seed in range(seeds):  # before compare.json is rewritten: a refused comparison leaves the old one intact
        for arm in arms:
            if (run_dir(out, arm, seed) / "result.json").is_file():
                seeded = Arm(arm.label, {**arm.overrides, "train.seed": str(seed)}, arm.max_seeds)
                check_reusable(run_dir(out, arm, seed), arm_config(base, seeded, common), known)
    out.mkdir(parents=True, exist_ok=True)
    spec = {"config": base, "common": common, "seeds": list(range(seeds)), "command": command,
            "arms": [{"label": a.label, "overrides": a.overrides, "max_seeds": a.max_seeds} for a in arms]}
    (out / "compare.json").write_text(json.dumps(spec, indent=2) + "\n")
    # seed-major: a partial comparison already has every method for the first seeds
    todo = [(arm, seed) for seed in range(seeds) for arm in arms if arm.max_seeds is None or seed < arm.max_seeds]
    train_all(todo, out, base, common, log, plugins, jobs)
    calibrate(out, spec, log)
    return report.build(out, log)


def train_all(todo: list[tuple[Arm, int]], out: Path, base: Path | str | None, common: dict[str, str], log=print,
              plugins: list[str] = (), jobs: int = 1) -> None:
    """ensure_run for every (arm, seed) in order, `jobs` at a time, each in a job slot with its own environment."""
    assert jobs >= 1
    gpus = _gpu_count() if jobs > 1 else 0
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(jobs):
        slots.put(slot)

    stop = threading.Event()  # set by an error or Ctrl-C: no further run starts

    def one(arm: Arm, seed: int) -> None:
        slot = slots.get()
        try:
            if not stop.is_set():
                ensure_run(out, base, arm, seed, common, log, plugins, job_env(jobs, slot, dict(os.environ), gpus))
        except BaseException:
            stop.set()
            raise
        finally:
            slots.put(slot)

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        for future in [pool.submit(one, arm, seed) for arm, seed in todo]:
            future.result()
    except BaseException:
        stop.set()
        raise
    finally:  # the runs under way end with their own process
        pool.shutdown(wait=True, cancel_futures=True)


def calibrate(out: Path, spec: dict[str, Any], log=print) -> None:
    """Time a training step at every depth any finished run used, in one interleaved pass, into calibration.json
    (kept and extended when the comparison grows): the report prices every run's steps with these times. Arms whose
    steps cost differently (config.COST_FIELDS: another optimizer, width, batch) are timed with their own config;
    calibration.json holds the baseline's table (step_seconds) and one per arm (arms)."""
    path = out / "calibration.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    base_cfg = arm_config(spec["config"], Arm(BASELINE, {"growth.method": BASELINE}), spec["common"])
    base_key = config_mod.cost_key(base_cfg)
    keys: dict[str, tuple] = {}
    cfgs = {base_key: base_cfg}
    known: dict[tuple, dict[int, float]] = {}
    if saved and "arms" not in saved:  # written before per-arm tables: its times are the baseline config's
        known[base_key] = {int(k): v for k, v in saved["step_seconds"].items()}
    wanted: dict[tuple, set[int]] = {}
    for arm in spec["arms"]:
        cfg = arm_config(spec["config"], Arm(arm["label"], arm["overrides"]), spec["common"])
        key = keys[arm["label"]] = config_mod.cost_key(cfg)
        cfgs.setdefault(key, cfg)
        known.setdefault(key, {}).update({int(k): v for k, v in saved.get("arms", {}).get(arm["label"], {}).items()})
        for seed in spec["seeds"]:
            run = out / "runs" / arm["label"] / f"seed{seed}"
            if (run / "result.json").is_file():
                wanted.setdefault(key, set()).update(s.depth for s in report.run_stages(run))
    todo = [(key, d) for key in wanted for d in sorted(wanted[key]) if d not in known[key]]
    if todo:
        from stackwise.calibrate import step_seconds  # (torch)

        log(f"calibration: timing {len(todo)} (config, depth) step(s) in one interleaved pass ...")
        for (key, d), seconds in zip(todo, step_seconds([(cfgs[key], d) for key, d in todo])):
            known[key][d] = seconds
    # written even when nothing was timed: an arm added later whose steps cost what another arm's do (say, another
    # LR) gets that table without a pass of its own

    def table(key: tuple) -> dict[str, float]:
        return {str(d): t for d, t in sorted(known.get(key, {}).items())}

    config_mod.write_atomic(path, json.dumps({"step_seconds": table(base_key),
                                              "arms": {label: table(key) for label, key in keys.items()}},
                                             indent=2) + "\n")
