"""`stackwise compare`: run several methods × seeds on identical data and summarise them honestly.

Method specs (`--methods`) are comma-separated; each is a name optionally followed by `:field=value` overrides:

    none                                   the fixed-depth baseline (always the reference; added if missing)
    midas                                  growth.method midas, everything else from the config
    midas:growth.alpha=2                   MIDAS with PROP-2, beside PROP-1 in the same comparison
    shallow:model.n_layers=4               a label that is not a method runs the baseline path with its overrides
    lidas:seeds=2                          `seeds=N` caps that arm at N seeds (the cheaper arms of a long study)

Each arm × seed is its own `python -m stackwise train` process under OUT/runs/<arm>/seed<S>/, so a crash loses one
run; a finished run (result.json present) is reused when the command is repeated, and an interrupted one resumes
from its checkpoint. Everything not overridden is identical across arms, and seed S gives every arm the same data
order. `--equal-compute` adds the No-Train-No-Gain baseline: the full model for T / (fastest predicted total-FLOPs
speedup among the growth arms) steps with its own, fully decayed schedule.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stackwise import config as config_mod
from stackwise import growth, operators
from stackwise.errors import UserError
from stackwise.speedup import compute_equivalent_speedup, iso_loss_speedup

BASELINE = "none"
EQUAL_COMPUTE = "equal-compute"


@dataclass
class Arm:
    label: str
    overrides: dict[str, str] = field(default_factory=dict)
    max_seeds: int | None = None  # None: every seed of the comparison


def parse_methods(text: str) -> list[Arm]:
    arms = []
    for spec in (s.strip() for s in text.split(",")):
        if not spec:
            continue
        name, *pairs = spec.split(":")
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
            overrides[key] = value
        overrides.setdefault("growth.method", BASELINE)
        label = ":".join([name, *(p for p in pairs if not p.startswith("seeds="))])
        label = re.sub(r"[^A-Za-z0-9_.-]+", "-", label.replace(":", "_").replace("=", "-"))  # one path component
        arms.append(Arm(label, overrides, max_seeds))
    if len({a.label for a in arms}) != len(arms):
        raise UserError("--methods: the same method spec appears twice")
    if not any(a.label == BASELINE for a in arms):
        arms.insert(0, Arm(BASELINE, {"growth.method": BASELINE}))
    return arms


def arm_config(base: Path | str | None, arm: Arm, common: dict[str, str]) -> config_mod.Config:
    return config_mod.load(base, {**common, **arm.overrides})


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


FAILED = "failed.json"  # in a run directory whose training process failed: its exit code and last error line


def failure(run: Path) -> str | None:
    """The error line of a run whose last attempt failed (None if it did not, or has not run)."""
    path = run / FAILED
    if (run / "result.json").is_file() or not path.is_file():
        return None
    return json.loads(path.read_text())["error"]


def ensure_run(out: Path, base: Path | str | None, arm: Arm, seed: int, common: dict[str, str], log=print) -> Path:
    """Train one arm × seed in its own process unless it already finished; resume it if it was interrupted. A failed
    attempt leaves failed.json in the run directory (read by the report); a later success removes it."""
    run = run_dir(out, arm, seed)
    if (run / "result.json").is_file():
        log(f"reusing {run}")
        return run
    flags = [x for k, v in {**common, **arm.overrides, "train.seed": str(seed)}.items() for x in (f"--{k}", str(v))]
    cmd = [sys.executable, "-m", "stackwise", "train"]
    if (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("step_*")):
        cmd += ["--resume", str(run), *flags]
    else:
        cmd += [*(["--config", str(base)] if base else []), "--out", str(run), *flags]
    log(f"training {arm.label} seed {seed}: {' '.join(cmd[2:])}")
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"(no message; exit code {proc.returncode})"]
        error = tail[0].removeprefix("stackwise: error: ")
        log(f"run failed: {run} ({error})")
        run.mkdir(parents=True, exist_ok=True)
        config_mod.write_atomic(run / FAILED, json.dumps({"returncode": proc.returncode, "error": error}) + "\n")
    else:
        (run / FAILED).unlink(missing_ok=True)
    return run


@dataclass
class Curve:
    steps: list[int]
    flops: list[float]
    wall: list[float]
    calibrated_wall: list[float]
    val: list[float]
    depth_at: list[tuple[int, int]]  # (step, depth) of every logged step
    boundaries: list[int]  # steps at which growth happened


def load_curve(run: Path, step_seconds: dict[int, float] | None = None) -> Curve | None:
    """A finished run's validation curve; calibrated wall time re-costs its steps with per-depth step times."""
    if not (run / "result.json").is_file():
        return None
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    cfg = config_mod.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    stages = growth.plan(cfg)
    evals = [r for r in rows if "val_loss" in r]

    def calibrated(step: int) -> float:
        if not step_seconds:
            return float("nan")
        return sum(max(0, min(step, s.end_step) - s.start_step) * step_seconds[s.depth] for s in stages)

    return Curve(
        steps=[r["step"] for r in evals], flops=[r["flops"] for r in evals], wall=[r["wall_s"] for r in evals],
        calibrated_wall=[calibrated(r["step"]) for r in evals], val=[r["val_loss"] for r in evals],
        depth_at=[(r["step"], r["depth"]) for r in rows], boundaries=[s.start_step for s in stages[1:]],
    )


def _mean_std(values: list[float]) -> dict[str, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def summarize(curves: dict[str, dict[int, Curve]]) -> list[dict[str, Any]]:
    """Per arm: final loss, costs and speedups (each seed against the baseline of the same seed), mean ± std."""
    base = curves[BASELINE]
    out = []
    for label, by_seed in curves.items():
        seeds = sorted(s for s in by_seed if s in base)
        row: dict[str, Any] = {"method": label, "seeds": seeds}
        row["final_val_loss"] = _mean_std([by_seed[s].val[-1] for s in seeds])
        row["flops"] = _mean_std([by_seed[s].flops[-1] for s in seeds])
        row["wall_s"] = _mean_std([by_seed[s].wall[-1] for s in seeds])
        row["calibrated_wall_s"] = _mean_std([by_seed[s].calibrated_wall[-1] for s in seeds])
        iso, ce, gaps = {}, {}, []
        for key, attr in (("flops", "flops"), ("wall", "wall"), ("calibrated_wall", "calibrated_wall")):
            iso_vals, ce_vals = [], []
            for s in seeds:
                b, c = base[s], by_seed[s]
                sp, gap = iso_loss_speedup(getattr(b, attr), b.val, getattr(c, attr), c.val)
                iso_vals.append(sp)
                if key == "flops":
                    gaps.append(gap)
                ce_vals.append(compute_equivalent_speedup(getattr(b, attr), b.val, getattr(c, attr), c.val))
            iso[key] = _mean_std(iso_vals)
            ce[key] = _mean_std(ce_vals)
        row["iso_loss_speedup"] = iso
        row["reached_baseline_loss"] = f"{sum(g == 0 for g in gaps)}/{len(gaps)}"
        row["gap_to_baseline_loss"] = _mean_std(gaps)
        row["compute_equivalent_speedup"] = ce
        out.append(row)
    return out


def run(config: str | None, methods: str, seeds: int, equal_compute: bool, out: Path, common: dict[str, str],
        command: str, log=print) -> list[dict[str, Any]]:
    """Train every arm × seed (reusing finished runs), then build the report. Returns the summary rows."""
    if config:
        config_mod.resolve_recipe(config)  # fail early on a missing recipe; keep the name as the user wrote it
    base = config
    arms = parse_methods(methods)
    for arm in arms:  # validate every arm's config before the first hour of training
        arm_config(base, arm, common)
    if equal_compute:
        arms.append(equal_compute_arm(base, arms, common))
    out.mkdir(parents=True, exist_ok=True)
    spec = {"config": base, "common": common, "seeds": list(range(seeds)), "command": command,
            "arms": [{"label": a.label, "overrides": a.overrides, "max_seeds": a.max_seeds} for a in arms]}
    (out / "compare.json").write_text(json.dumps(spec, indent=2) + "\n")
    for seed in range(seeds):  # seed-major: a partial comparison already has every method for the first seeds
        for arm in arms:
            if arm.max_seeds is None or seed < arm.max_seeds:
                ensure_run(out, base, arm, seed, common, log)
    from stackwise import report

    return report.build(out, log)
