"""A comparison's report: summary.json, report.md and PNG plots, built from what the comparison folder holds.

`stackwise report DIR` calls `build(DIR)`; `stackwise compare` calls it after its runs and its calibration pass
(calibration.json, written by compare.calibrate). Building a report only reads: it never trains, times, prepares
data or needs the corpus or torch, so a comparison copied to another machine rebuilds to the same files. Each run's
stages (depth and steps) come from its result.json.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from stackwise import config as config_mod
from stackwise import growth
from stackwise.errors import UserError
from stackwise.speedup import compute_equivalent_speedup, iso_loss_speedup

BASELINE = "none"
EQUAL_COMPUTE = "equal-compute"


def _load_spec(out: Path) -> dict[str, Any]:
    path = out / "compare.json"
    if not path.is_file():
        raise UserError(f"{out}: not a comparison directory (no compare.json)")
    return json.loads(path.read_text())


def _calibration(out: Path) -> dict[str, dict[int, float]]:
    """Per-arm, per-depth step seconds from calibration.json ({} if the comparison has none). A file written before
    per-arm tables holds one table (step_seconds), the baseline config's: it prices every arm (key "")."""
    path = out / "calibration.json"
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    tables = {label: {int(k): v for k, v in t.items()} for label, t in saved.get("arms", {}).items()}
    if "arms" not in saved:
        tables[""] = {int(k): v for k, v in saved["step_seconds"].items()}
    return tables


def _calibration_text(tables: dict[str, dict[int, float]]) -> str:
    """The per-depth step times in words: the baseline's, then each arm whose steps cost differently."""
    def ms(t: dict[int, float]) -> str:
        return ", ".join(f"depth {d}: {s * 1000:.1f} ms" for d, s in sorted(t.items()))

    base = tables.get(BASELINE, tables.get("", {}))
    other = [f"{label}: {ms(t)}" for label, t in tables.items() if label not in (BASELINE, "") and t
             and any(base.get(d) != s for d, s in t.items())]
    return "; ".join([ms(base) or "not yet measured", *other])


def run_config(run: Path) -> config_mod.Config:
    """The config a run was trained with (its config.yaml)."""
    return config_mod.from_dict(yaml.safe_load((run / "config.yaml").read_text()))


def run_stages(run: Path) -> list[growth.Stage]:
    """The stages a finished run trained through, from its result.json (or, for a run written before result.json
    recorded them, from its config's plan)."""
    result = json.loads((run / "result.json").read_text())
    if "stages" in result:
        return [growth.Stage(i + 1, s["depth"], s["start_step"], s["end_step"], None)
                for i, s in enumerate(result["stages"])]
    return growth.plan(run_config(run))


FAILED = "failed.json"  # in a run directory whose training process failed: its exit code and last error line


def failure(run: Path) -> str | None:
    """The error line of a run whose last attempt failed (None if it did not, or has not run)."""
    path = run / FAILED
    if (run / "result.json").is_file() or not path.is_file():
        return None
    return json.loads(path.read_text())["error"]


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
    stages = run_stages(run)
    evals = [r for r in rows if "val_loss" in r]

    def calibrated(step: int) -> float:
        if not step_seconds or any(s.depth not in step_seconds for s in stages):
            return float("nan")  # not calibrated (yet): `stackwise compare` times the depths
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
    if any(np.isnan(values)):  # not measured (calibrated time before the calibration pass): NaN, not a crash
        return {"mean": float("nan"), "std": float("nan"), "n": len(values)}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def summarize(curves: dict[str, dict[int, Curve]], baseline: str = BASELINE) -> list[dict[str, Any]]:
    """Per arm: final loss, costs and speedups (each seed against the baseline of the same seed), mean ± std."""
    base = curves[baseline]
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
        row["paired_final_loss_diff"] = paired_difference([by_seed[s].val[-1] - base[s].val[-1] for s in seeds])
        row["mean_curve_speedup"] = _mean_curve_speedup([base[s] for s in seeds], [by_seed[s] for s in seeds])
        row["per_seed_final_val_loss"] = {str(s): by_seed[s].val[-1] for s in seeds}
        out.append(row)
    return out


def own_baselines(spec: dict[str, Any]) -> dict[str, str]:
    """Each growth arm's own fixed-depth arm, where the comparison has one other than its baseline: the arm whose
    overrides are the same apart from the growth settings (`soap-midas: growth.method=midas, optim.name=soap` and
    `soap: optim.name=soap`), so that growth is also measured against training with the same optimizer, LR, width."""
    def rest(arm: dict[str, Any]) -> frozenset:
        return frozenset((k, v) for k, v in arm["overrides"].items() if not k.startswith("growth."))

    fixed = {rest(a): a["label"] for a in spec["arms"] if a["overrides"].get("growth.method") == BASELINE}
    return {a["label"]: fixed[rest(a)] for a in spec["arms"]
            if a["overrides"].get("growth.method") != BASELINE and fixed.get(rest(a), BASELINE) != BASELINE}


# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (beyond: the normal's 1.96)
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t95_half_width(std: float, n: int) -> float:
    """Half the 95% t-interval of a mean of n >= 2 values with sample standard deviation std."""
    return (_T95[n - 2] if n - 1 <= len(_T95) else 1.96) * std / n ** 0.5


def paired_difference(diffs: list[float]) -> dict[str, Any]:
    """Mean of per-seed paired differences (method − same-seed baseline) with its 95% t-interval (None below 2
    seeds): the honest answer to "is it better on average", whatever a single seed says."""
    n = len(diffs)
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0}
    mean = statistics.fmean(diffs)
    if n < 2:
        return {"mean": mean, "ci95": None, "n": 1}
    half = t95_half_width(statistics.stdev(diffs), n)
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": n}


def _mean_curve_speedup(base: list[Curve], runs: list[Curve]) -> dict[str, Any]:
    """Iso-loss speedup of the method's seed-mean validation curve against the baseline's seed-mean curve (costs
    averaged over seeds at each evaluation step), in FLOPs and calibrated time: unlike the per-seed speedups it
    counts the seeds that never reach the baseline, because they pull the mean curve up. `gap`: how far above the
    baseline's mean final loss the mean curve stays (0 when it gets there). `compute_equivalent`: the baseline mean
    curve's cost to reach the method mean curve's final loss over the method's cost, in FLOPs and calibrated time
    (what a method that never reaches the baseline still saves against the baseline stopped at the same loss)."""
    out: dict[str, Any] = {"flops": None, "calibrated_wall": None, "gap": None,
                           "compute_equivalent": {"flops": None, "calibrated_wall": None}}
    for attr in ("flops", "calibrated_wall") if runs else ():
        bx, bmean, _ = _mean_curve(base, attr)
        x, mean, _ = _mean_curve(runs, attr)
        if not (np.isnan(bx).any() or np.isnan(x).any()):  # (calibrated time is NaN until calibration ran)
            out[attr], out["gap"] = iso_loss_speedup(list(bx), list(bmean), list(x), list(mean))
            out["compute_equivalent"][attr] = compute_equivalent_speedup(list(bx), list(bmean), list(x), list(mean))
    return out


def _mean_curve(curves: list[Curve], attr: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = min(len(c.val) for c in curves)
    x = np.mean([getattr(c, attr)[:n] for c in curves], axis=0)
    vals = np.array([c.val[:n] for c in curves])
    return x, vals.mean(axis=0), vals.std(axis=0)


def _pyplot():
    """matplotlib, imported when a plot is drawn (so `stackwise --help` stays light)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, ax, xlabel: str, ylabel: str, path: Path) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def _plot(curves: dict[str, dict[int, Curve]], attr: str, xlabel: str, path: Path, logx: bool = False,
          boundaries: bool = False) -> None:
    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
    for i, (label, by_seed) in enumerate(curves.items()):
        color = f"C{i}"
        x, mean, std = _mean_curve(list(by_seed.values()), attr)
        ax.plot(x, mean, marker="o", ms=3, color=color, label=f"{label} (n={len(by_seed)})")
        if len(by_seed) > 1:
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15)
        if boundaries:
            for b in next(iter(by_seed.values())).boundaries:
                ax.axvline(b, color=color, ls=":", lw=0.8)
    if logx:
        ax.set_xscale("log")
    _finish(fig, ax, xlabel, "validation loss (nats/token)", path)


def _plot_depth(curves: dict[str, dict[int, Curve]], path: Path) -> None:
    fig, ax = _pyplot().subplots(figsize=(7, 3.5))
    for i, (label, by_seed) in enumerate(curves.items()):
        steps, depths = zip(*next(iter(by_seed.values())).depth_at)
        ax.step(steps, depths, where="post", color=f"C{i}", label=label)
    _finish(fig, ax, "optimizer step", "depth (layers)", path)


def plotted_score(result: dict) -> dict:
    """The score a task is judged by: multiple choice where defined, greedy exact match otherwise."""
    return result.get("multiple_choice") or result["generation"]


def primitive_score(tasks: dict) -> tuple[float, float]:
    """One number per evaluation: the mean over tasks of multiple-choice accuracy (greedy where there is none),
    and the same mean of those scores' chance levels."""
    scores = [plotted_score(r) for r in tasks.values()]
    return float(np.mean([r["accuracy"] for r in scores])), float(np.mean([r["chance"] for r in scores]))


def _training_primitives(out: Path, spec: dict[str, Any]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """Per arm and seed: the rows of the run's eval/primitives_during_training.jsonl (runs without one left out)."""
    rows: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for arm in spec["arms"]:
        for seed in spec["seeds"]:
            path = out / "runs" / arm["label"] / f"seed{seed}" / "eval" / "primitives_during_training.jsonl"
            lines = path.read_text().splitlines() if path.is_file() else []
            if lines:
                rows.setdefault(arm["label"], {})[seed] = [json.loads(line) for line in lines]
    return rows


def _primitive_curves(out: Path, spec: dict[str, Any]) -> dict[str, dict[int, list[tuple[float, dict[str, float]]]]]:
    """Per arm and seed: [(val loss, {task: score, "mean": mean score})] at each evaluation during training."""
    def point(row: dict[str, Any]) -> tuple[float, dict[str, float]]:
        scores = {t: plotted_score(r)["accuracy"] for t, r in row["tasks"].items()}
        return row["val_loss"], {**scores, "mean": primitive_score(row["tasks"])[0]}

    return {label: {seed: [point(row) for row in rows] for seed, rows in by_seed.items()}
            for label, by_seed in _training_primitives(out, spec).items()}


def _at_loss(points: list[tuple[float, dict[str, float]]], target: float) -> dict[str, float]:
    """Scores where the run's validation loss first comes down to `target`, linearly interpolated in loss between
    the evaluations around that crossing (the first evaluation's scores if it already starts below)."""
    if points[0][0] <= target:
        return dict(points[0][1])
    for (l0, s0), (l1, s1) in zip(points, points[1:]):
        if l1 <= target:
            w = (l0 - target) / (l0 - l1)
            return {k: s0[k] + w * (s1[k] - s0[k]) for k in s0}
    raise AssertionError("target loss not reached")  # (the caller picks a loss every run reaches)


def matched_loss(out: Path, spec: dict[str, Any]) -> dict[str, Any] | None:
    """Primitive accuracy at one validation loss that every run reaches (the highest of the runs' lowest losses),
    interpolated on each run's isoplot; per arm the mean over seeds with a 95% t-interval, per task and overall."""
    curves = _primitive_curves(out, spec)
    if not curves:
        return None
    target = max(min(loss for loss, _ in points) for by_seed in curves.values() for points in by_seed.values())
    at = {label: {seed: _at_loss(points, target) for seed, points in by_seed.items()}
          for label, by_seed in curves.items()}
    arms = {label: {key: paired_difference([a[key] for a in by_seed.values()]) for key in next(iter(by_seed.values()))}
            for label, by_seed in at.items()}
    base = at.get(BASELINE, {})
    vs_baseline = {}  # each arm minus the same-seed baseline, where both ran
    for label, by_seed in at.items():
        if label != BASELINE and (seeds := sorted(set(by_seed) & set(base))):
            vs_baseline[label] = {key: paired_difference([by_seed[s][key] - base[s][key] for s in seeds])
                                  for key in by_seed[seeds[0]]}
    return {"val_loss": target, "arms": arms, "vs_baseline": vs_baseline}


def uniform_loss(run: Path) -> float:
    """ln(vocabulary size): the validation loss of a uniform prediction. An evaluation above it models nothing of
    the validation text (say, while a first data stage trains on other text only)."""
    return math.log(run_config(run).model.vocab_size)


def isoplot(out: Path, spec: dict[str, Any], matched: float | None = None) -> dict[str, list[dict[str, Any]]] | None:
    """Primitive accuracy against validation loss during training, per arm (mean over seeds at each step), one
    panel per task and one for the mean score; evaluations above the uniform loss are left out (uniform_loss), and
    `matched` (the matched validation loss) is marked."""
    logs = _training_primitives(out, spec)
    data: dict[str, list[dict[str, Any]]] = {}
    for label, by_seed in logs.items():
        by_step: dict[int, list[tuple[float, float, float, dict[str, float]]]] = {}
        for seed, rows in by_seed.items():
            ceiling = uniform_loss(out / "runs" / label / f"seed{seed}")
            for row in rows:
                if row["val_loss"] <= ceiling:
                    scores = {t: plotted_score(r)["accuracy"] for t, r in row["tasks"].items()}
                    point = (row["val_loss"], *primitive_score(row["tasks"]), scores)
                    by_step.setdefault(row["step"], []).append(point)
        if by_step:
            data[label] = [{"step": s, "val_loss": float(np.mean([p[0] for p in pts])),
                            "accuracy": float(np.mean([p[1] for p in pts])),
                            "chance": float(np.mean([p[2] for p in pts])), "n_seeds": len(pts),
                            "tasks": {t: float(np.mean([p[3][t] for p in pts])) for t in pts[0][3]}}
                           for s, pts in sorted(by_step.items())]
    if not data:
        return None
    chances = {t: plotted_score(r)["chance"]
               for by_seed in logs.values() for rows in by_seed.values()
               for t, r in rows[0]["tasks"].items()}
    panels = ["mean", *chances]
    cols = min(4, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = _pyplot().subplots(nrows, cols, figsize=(3.6 * cols, 3.0 * nrows), squeeze=False, sharex=True,
                                   layout="constrained")
    for ax, panel in zip(axes.flat, panels):
        for i, (label, pts) in enumerate(data.items()):
            ys = [p["accuracy"] if panel == "mean" else p["tasks"].get(panel, float("nan")) for p in pts]
            ax.plot([p["val_loss"] for p in pts], ys, marker="o", ms=3, color=f"C{i}", label=label)
        chance = float(np.mean([p["chance"] for pts in data.values() for p in pts])) if panel == "mean" \
            else chances[panel]
        ax.axhline(chance, color="grey", ls="--", lw=1, label="chance")
        if matched is not None:
            ax.axvline(matched, color="black", ls=":", lw=1, label="matched loss")
        ax.set_title("mean score" if panel == "mean" else panel, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    axes.flat[0].invert_xaxis()  # (shared: every panel) training proceeds to the right
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("validation loss (nats/token; training proceeds to the right)", fontsize=9)
    fig.supylabel("accuracy (multiple choice where defined)", fontsize=9)
    fig.savefig(out / "isoplot.png", dpi=110)
    _pyplot().close(fig)
    (out / "isoplot.json").write_text(json.dumps(data, indent=2) + "\n")
    return data


def _fmt(stat: dict[str, Any], digits: int = 3, unit: str = "") -> str:
    if stat["mean"] is None:
        return "not reached"
    s = f"{stat['mean']:.{digits}f}{unit}"
    return s + (f" ± {stat['std']:.{digits}f}" if stat["n"] > 1 else "") + (f" ({stat['n']})" if stat["n"] else "")


def _headline(row: dict[str, Any]) -> str:
    diff, curve = row["paired_final_loss_diff"], row["mean_curve_speedup"]
    if row["method"] == BASELINE:
        paired = "(reference)"
    elif diff["mean"] is None:
        paired = "—"
    else:
        paired = f"{diff['mean']:+.4f}" + ("" if diff["ci95"] is None else
                                           f" [{diff['ci95'][0]:+.4f}, {diff['ci95'][1]:+.4f}]")

    def speeds(d: dict[str, Any]) -> str:  # "FLOPs / calibrated"
        return " / ".join("—" if d[k] is None else f"{d[k]:.2f}×" for k in ("flops", "calibrated_wall"))

    reached = speeds(curve)
    if curve["flops"] is None and curve["gap"]:
        reached += f" (gap {curve['gap']:+.3f})"
    equivalent = speeds(curve["compute_equivalent"])
    seeds = " / ".join(f"{v:.3f}" for v in row["per_seed_final_val_loss"].values())
    return (f"| {row['method']} | {len(row['seeds'])} | {_fmt(row['final_val_loss'], 4)} | {paired} | {reached} | "
            f"{equivalent} | {row['reached_baseline_loss']} | {seeds} |")


def _own_baseline_lines(summary: list[dict[str, Any]]) -> list[str]:
    """The headline table again for growth arms against their own fixed-depth arm (own_baselines), if any."""
    rows = [{**row["against_own_baseline"], "method": f"{row['method']} vs {row['against_own_baseline']['baseline']}"}
            for row in summary if "against_own_baseline" in row]
    if not rows:
        return []
    return ["", "## Growth against its own fixed-depth arm", "",
            "Each growth arm against the arm with the same settings apart from growth (same optimizer, LR, width: "
            "does growth save as much there as against the baseline?), seed against seed, in the columns above.", "",
            "| method vs own fixed-depth arm | seeds | final val loss | paired difference [95% CI] | "
            "mean-curve speedup (FLOPs / calibrated) | mean-curve compute-equivalent (FLOPs / calibrated) | "
            "seeds reaching its loss | per seed |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
            *[_headline(row) for row in rows]]


def _matched_lines(matched: dict[str, Any]) -> list[str]:
    tasks = [k for k in next(iter(matched["arms"].values())) if k != "mean"]

    def cell(stat: dict[str, Any]) -> str:
        ci = "" if stat["ci95"] is None else f" [{stat['ci95'][0]:.0%}, {stat['ci95'][1]:.0%}]"
        return f"{stat['mean']:.1%}{ci}"

    lines = ["", f"Accuracy at matched validation loss {matched['val_loss']:.4f} (the highest of the runs' lowest "
             "losses, so every run reaches it; interpolated on each run's isoplot; mean over seeds with a 95% "
             "t-interval; matched_loss.json):", "",
             "| method | seeds | mean | " + " | ".join(tasks) + " |", "|---|---:|---:|" + "---:|" * len(tasks)]
    for label, stats in matched["arms"].items():
        lines.append(f"| {label} | {stats['mean']['n']} | {cell(stats['mean'])} | "
                     + " | ".join(cell(stats[t]) for t in tasks) + " |")
    if matched.get("vs_baseline"):
        def points(stat: dict[str, Any]) -> str:
            ci = "" if stat["ci95"] is None else f" [{100 * stat['ci95'][0]:+.1f}, {100 * stat['ci95'][1]:+.1f}]"
            return f"{100 * stat['mean']:+.1f}{ci}"

        lines += ["", "The same, paired: each method's accuracy at that loss minus the same-seed baseline's, in "
                  "points, mean over the paired seeds with a 95% t-interval:", "",
                  "| method | paired seeds | mean | " + " | ".join(tasks) + " |",
                  "|---|---:|---:|" + "---:|" * len(tasks)]
        for label, stats in matched["vs_baseline"].items():
            lines.append(f"| {label} | {stats['mean']['n']} | {points(stats['mean'])} | "
                         + " | ".join(points(stats[t]) for t in tasks) + " |")
    return lines


def _analysis_lines(summary: dict[str, Any]) -> list[str]:
    """The `stackwise analyze` section: looping the middle block and depth use, per method (means over seeds)."""
    k_max = max(len(s["looping_mean_accuracy"]) for s in summary.values())
    lines = ["", "Depth analyses (`stackwise analyze`; each run's own files in its analysis/ folder): mean primitive "
             "accuracy with the middle block looped K times, and the early-exit depth score (mean over tokens of "
             "the first layer after which the logit lens agrees with the final prediction for good, over the depth).",
             "", "| method | seeds | " + " | ".join(f"K={k}" for k in range(1, k_max + 1)) + " | depth score |",
             "|---|---:|" + "---:|" * k_max + "---:|"]
    for label, s in summary.items():
        accs = [f"{a:.1%}" for a in s["looping_mean_accuracy"]] + [""] * (k_max - len(s["looping_mean_accuracy"]))
        lines.append(f"| {label} | {s['seeds']} | " + " | ".join(accs) + f" | {s['depth_score']:.2f} |")
    return [*lines, "", "![depth analyses](analysis/analysis.png)"]


def _train_losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["train_loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


def growth_events(out: Path, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every growth event of every finished run: its step and depth, the run's own loss_jump and recovery_steps
    (telemetry.py), and the train-loss gap to the baseline run of the same seed (same data order) averaged over the
    logged steps just before and just after it (a window of 5% of the run, at least 5 steps)."""
    rows = []
    for arm in spec["arms"]:
        for seed in spec["seeds"]:
            run, base = (out / "runs" / label / f"seed{seed}" for label in (arm["label"], BASELINE))
            if arm["label"] == BASELINE or not all((r / "result.json").is_file() for r in (run, base)):
                continue
            log_path = run / "events.jsonl"  # (a run that never grew has none)
            events = [e for e in map(json.loads, log_path.read_text().splitlines()) if e.get("event") == "growth"] \
                if log_path.is_file() else []
            own, ref = _train_losses(run), _train_losses(base)
            gap = {s: own[s] - ref[s] for s in own if s in ref}
            width = max(5, max(own) // 20)

            def mean_gap(lo: int, hi: int, gap=gap) -> float | None:
                vals = [g for s, g in gap.items() if lo <= s < hi]
                return statistics.fmean(vals) if vals else None

            for e in events:
                s = e["step"]  # the event happens after s steps: logged steps <= s are before it
                rows.append({"method": arm["label"], "seed": seed, "step": s, "depth": e["depth"],
                             "loss_jump": e.get("loss_jump"), "recovery_steps": e.get("recovery_steps"),
                             "gap_before": mean_gap(s - width + 1, s + 1), "gap_after": mean_gap(s + 1, s + width + 1),
                             "gap_curve": sorted((t - s, g) for t, g in gap.items() if abs(t - s) <= 4 * width)})
    return rows


def _plot_growth_events(rows: list[dict[str, Any]], path: Path) -> None:
    methods = sorted({r["method"] for r in rows})
    fig, axes = _pyplot().subplots(1, len(methods), figsize=(5 * len(methods), 3.5), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        for r in (r for r in rows if r["method"] == method):
            xs, ys = zip(*r["gap_curve"]) if r["gap_curve"] else ((), ())
            ax.plot(xs, ys, lw=1, label=f"seed {r['seed']}, step {r['step']} → depth {r['depth']}")
        ax.axvline(0, color="grey", lw=0.8)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(method)
        ax.set_xlabel("steps since the growth event (steps <= 0 are before it)")
        ax.set_ylabel("train loss − same-seed baseline")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def build(out: Path, log=print) -> list[dict[str, Any]]:
    out = Path(out)
    spec = _load_spec(out)
    step_s = _calibration(out)
    curves: dict[str, dict[int, Curve]] = {}
    failed: dict[str, list[dict[str, Any]]] = {}
    for arm in spec["arms"]:
        for seed in spec["seeds"]:
            run = out / "runs" / arm["label"] / f"seed{seed}"
            curve = load_curve(run, step_s.get(arm["label"], step_s.get("")))
            if curve is not None:
                curves.setdefault(arm["label"], {})[seed] = curve
            elif (error := failure(run)) is not None:
                failed.setdefault(arm["label"], []).append({"seed": seed, "error": error})
    if BASELINE not in curves:
        why = f" (it failed: {failed[BASELINE][0]['error']})" if BASELINE in failed else ""
        raise UserError(f"{out}: no finished baseline run, nothing to compare against{why}")
    summary = summarize(curves)
    own = own_baselines(spec)
    for row in summary:
        row["status"] = "failed" if row["method"] in failed else "ok"
        row["failed"] = failed.get(row["method"], [])
        if (fixed := own.get(row["method"])) in curves:
            paired = summarize({fixed: curves[fixed], row["method"]: curves[row["method"]]}, baseline=fixed)[-1]
            row["against_own_baseline"] = {"baseline": fixed, **paired}
    summary += [{"method": label, "status": "failed", "seeds": [], "failed": runs}
                for label, runs in failed.items() if label not in curves]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    _plot(curves, "flops", "training FLOPs (log scale)", out / "loss_vs_flops.png", logx=True)
    _plot(curves, "wall", "training wall time, s (measured; evaluation excluded)", out / "loss_vs_wall.png")
    _plot(curves, "calibrated_wall", "calibrated training time, s (per-depth step times from one pass)",
          out / "loss_vs_calibrated_wall.png")
    _plot(curves, "steps", "optimizer step (dotted: growth boundaries)", out / "loss_vs_step.png", boundaries=True)
    _plot_depth(curves, out / "depth.png")

    lines = [
        "# Comparison report", "",
        f"Command: `{spec['command']}`", "",
        f"Seeds: {spec['seeds']}. Entries are mean ± std over seeds (n in parentheses). Speedups compare each seed "
        "with the baseline run of the same seed (same data order). Wall time counts training steps only (evaluation, "
        "checkpointing and the calibration pass excluded; compilation is inside the first steps). Calibrated time "
        "re-costs every run's steps with per-depth step times measured in one interleaved pass at the end "
        f"({_calibration_text(step_s)}).", "",
        "## Headline: the mean over seeds", "",
        "Paired difference: the method's final validation loss minus the same-seed baseline's, mean over seeds with "
        "its 95% t-interval (negative: better than the baseline). Mean-curve speedup: the iso-loss speedup of the "
        "method's seed-mean validation curve against the baseline's seed-mean curve, so seeds that never reach the "
        "baseline count (— with the gap left when the mean curve never gets there). Mean-curve compute-equivalent "
        "speedup: the baseline's seed-mean curve's cost to reach the method's mean final loss over the method's "
        "cost (the saving against a baseline stopped at the method's loss; below 1: the baseline is cheaper).", "",
        "| method | seeds | final val loss | paired difference to baseline [95% CI] | mean-curve speedup (FLOPs / "
        "calibrated) | mean-curve compute-equivalent (FLOPs / calibrated) | seeds reaching the baseline's loss | "
        "per seed |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        *[_headline(row) for row in summary if "final_val_loss" in row],
        *_own_baseline_lines(summary),
        "", "## Per seed: speedups of the seeds that reached the baseline (mean ± std over those seeds)", "",
        "| method | final val loss | FLOPs | wall s | calibrated s | reached baseline loss | iso-loss speedup "
        "(FLOPs / wall / calibrated) | compute-equivalent speedup (FLOPs / wall / calibrated) |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in summary:
        if "final_val_loss" not in row:
            lines.append(f"| {row['method']} | failed | | | | | | |")
            continue
        iso, ce = row["iso_loss_speedup"], row["compute_equivalent_speedup"]
        gap = "" if row["gap_to_baseline_loss"]["mean"] in (None, 0) else \
            f" (gap {row['gap_to_baseline_loss']['mean']:+.3f})"
        lines.append(
            f"| {row['method']} | {_fmt(row['final_val_loss'], 4)} | {row['flops']['mean']:.3e} | "
            f"{_fmt(row['wall_s'], 1)} | {_fmt(row['calibrated_wall_s'], 1)} | {row['reached_baseline_loss']}{gap} | "
            f"{_fmt(iso['flops'])} / {_fmt(iso['wall'])} / {_fmt(iso['calibrated_wall'])} | "
            f"{_fmt(ce['flops'])} / {_fmt(ce['wall'])} / {_fmt(ce['calibrated_wall'])} |")
    failures = [(row["method"], f) for row in summary for f in row["failed"]]
    if failures:
        lines += ["", f"**Failed runs ({len(failures)})**, left out of the statistics above:", ""]
        lines += [f"- `{label}` seed {f['seed']}: {f['error']}" for label, f in failures]
    lines += ["", "Arms:", ""]
    for arm in spec["arms"]:
        lines.append(f"- `{arm['label']}`: " + ", ".join(f"`{k}={v}`" for k, v in arm["overrides"].items()))
    events = growth_events(out, spec)
    if events:
        (out / "growth_events.json").write_text(json.dumps(
            [{k: v for k, v in r.items() if k != "gap_curve"} for r in events], indent=2) + "\n")
        _plot_growth_events(events, out / "growth_events.png")

        def num(v: float | None, fmt: str = "+.3f") -> str:
            return "—" if v is None else format(v, fmt)

        lines += ["", "Growth events: the run's train-loss jump against its own pre-event trend, the steps until it is "
                  "back on that trend (— : not before the next event or the end), and its train-loss gap to the "
                  "same-seed baseline just before and just after the event (growth_events.json).", "",
                  "| method | seed | step | depth | loss jump | recovery steps | gap before | gap after |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['method']} | {r['seed']} | {r['step']} | {r['depth']} | {num(r['loss_jump'])} | "
                  f"{num(r['recovery_steps'], 'd')} | {num(r['gap_before'])} | {num(r['gap_after'])} |"
                  for r in events]
        lines += ["", "![growth events](growth_events.png)"]
    if (out / "analysis" / "analysis.json").is_file():
        lines += _analysis_lines(json.loads((out / "analysis" / "analysis.json").read_text()))
    matched = matched_loss(out, spec)
    if matched is not None and isoplot(out, spec, matched["val_loss"]):
        lines += ["", "Isoplot: reasoning-primitive accuracy against validation loss at the evaluation steps during "
                  "training (`eval.primitives_every`), per task and the mean score, mean over seeds at each step "
                  "(numbers in isoplot.json); evaluations whose validation loss is above ln(vocabulary size), worse "
                  "than a uniform guess, are left out; dotted: the matched validation loss below.", "",
                  "![isoplot](isoplot.png)"]
        (out / "matched_loss.json").write_text(json.dumps(matched, indent=2) + "\n")
        lines += _matched_lines(matched)
    lines += ["", "![loss vs FLOPs](loss_vs_flops.png)", "![loss vs wall](loss_vs_wall.png)",
              "![loss vs calibrated time](loss_vs_calibrated_wall.png)", "![loss vs step](loss_vs_step.png)",
              "![depth](depth.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    return summary
