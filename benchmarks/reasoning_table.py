"""The reasoning study's tables, as markdown, from a comparison's published small files (each run's result.json,
eval/primitives.json, eval/probe.json and analysis/looping.json): per run, the final validation loss, the 5-shot
primitives (multiple choice; bold where the 95% interval is above chance), the fine-tuning probe (mean ± std over
its data seeds) and the looped middle block's mean accuracy per K; then per arm, the mean over seeds with a 95%
t-interval, and each other arm's paired difference to the same-seed baseline (the comparison's first arm, or the
arm `--pair` names: an LR sweep's growth run against the fixed-depth run at the same LR). `--primitives-only` leaves
out the probe and looping columns (a part that does not run them). `--during-training TASK --steps S,S,...`
prints instead one task's in-training scores at those steps, each arm's seeds pooled (correct answers over
queries, 95% Wilson interval; the depth each arm had there). docs/results/reasoning/README.md's study and controls
tables come from this.

    python benchmarks/reasoning_table.py CMP_DIR [--tasks var0_math,var0_code,...] [--name LABEL=TEXT ...]
        [--pair LABEL=BASE_LABEL ...] [--primitives-only] [--during-training TASK --steps 2000,2500,...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from stackwise.evals.scoring import wilson
from stackwise.report import paired_difference, plotted_score

TASKS = ("var0_math", "var0_code", "var0_basic", "var1_basic", "var1_code", "copy_random", "copy_words")
NAMES = {"none": "baseline", "midas": "MIDAS", "gradstack": "GradStack", "lidas": "LIDAS"}


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def run_numbers(run: Path, tasks: tuple[str, ...]) -> dict | None:
    """One finished run's numbers (None if it has not finished): val loss, per task (accuracy, ci95, chance), the
    probe's per-data-seed late accuracies and the looping curve (K, mean accuracy)."""
    result = _read(run / "result.json")
    if result is None:
        return None
    prims = _read(run / "eval" / "primitives.json")
    scores = {}
    if prims is not None:
        final = prims["results"][-1]["tasks"]
        for t in tasks:
            if t in final:
                r = plotted_score(final[t])
                scores[t] = (r["accuracy"], r["ci95"], r["chance"])
    probe = _read(run / "eval" / "probe.json")
    looping = _read(run / "analysis" / "looping.json")
    return {"val_loss": result["final_val_loss"], "tasks": scores,
            "probe": None if probe is None else [s["late_accuracy"] for s in probe["per_seed"]],
            "looping": None if looping is None else [r["mean_accuracy"] for r in looping["results"]]}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _cell(score: tuple[float, list[float], float] | None) -> str:
    if score is None:
        return "—"
    acc, (lo, hi), chance = score
    text = f"{_pct(acc)} [{100 * lo:.0f}%, {100 * hi:.0f}%]"
    return f"**{text}**" if lo > chance else text


def _interval(stat: dict, pct: bool, signed: bool = False) -> str:
    if stat["mean"] is None:
        return "—"
    scale, digits = (100, 1) if pct else (1, 3)
    sign = "+" if signed else ""
    text = f"{scale * stat['mean']:{sign}.{digits}f}"
    if stat["ci95"] is not None:
        lo, hi = stat["ci95"]
        text += f" [{scale * lo:{sign}.{digits}f}, {scale * hi:{sign}.{digits}f}]"
    return text.replace("-", "−")


def _seed_mean(values: list[float], runs: int) -> str:
    """A percentage's mean over seeds with its t-interval, and how many runs it covers where some lack it."""
    text = _interval(paired_difference(values), True)
    return text if len(values) == runs else f"{text} (n={len(values)})"


def per_run_table(runs: dict[str, dict[int, dict]], names: dict[str, str], tasks: tuple[str, ...],
                  extras: bool = True) -> str:
    """One row per run; `extras`: the probe and looping columns too."""
    head = "| method | seed | final val loss | " + " | ".join(tasks)
    head += " | probe | looping the middle block, K = 1, 2, ... |" if extras else " |"
    lines = [head, "|---|---:|---:|" + "---|" * (len(tasks) + 2 * extras)]
    for label, by_seed in runs.items():
        for seed, r in sorted(by_seed.items()):
            probe = "(not run)" if not r["probe"] else (
                f"{_pct(statistics.mean(r['probe']))} ± {_pct(statistics.stdev(r['probe']))}"
                if len(r["probe"]) > 1 else _pct(r["probe"][0]))
            loop = "(not run)" if r["looping"] is None else \
                " / ".join(f"{100 * acc:.1f}" for acc in r["looping"]) + "%"
            lines.append(f"| {names.get(label, label)} | {seed} | {r['val_loss']:.3f} | "
                         + " | ".join(_cell(r["tasks"].get(t)) for t in tasks)
                         + (f" | {probe} | {loop} |" if extras else " |"))
    return "\n".join(lines)


def per_arm_table(runs: dict[str, dict[int, dict]], names: dict[str, str], tasks: tuple[str, ...],
                  pairs: dict[str, str] | None = None, extras: bool = True) -> str:
    """Mean over seeds [95% t-interval] per arm, then each arm's paired difference to the same-seed baseline: the
    first arm, or the arm `pairs` maps it to (an arm that is some other arm's base is not itself paired)."""
    first = next(iter(runs))
    pairs = {label: (pairs or {}).get(label, first) for label in runs}
    unknown = {b for b in pairs.values() if b not in runs}
    assert not unknown, f"--pair: no finished run of {', '.join(sorted(unknown))}"
    head = "| method | seeds | final val loss | " + " | ".join(tasks) + (" | probe |" if extras else " |")
    lines = ["Mean over seeds [95% t-interval]:", "", head, "|---|---:|---:|" + "---:|" * (len(tasks) + extras)]
    for label, by_seed in runs.items():
        rs = [by_seed[s] for s in sorted(by_seed)]
        probes = [statistics.mean(r["probe"]) for r in rs if r["probe"]]
        loss = _interval(paired_difference([r["val_loss"] for r in rs]), False)
        lines.append(
            f"| {names.get(label, label)} | {len(rs)} | {loss} | "
            + " | ".join(_seed_mean([r["tasks"][t][0] for r in rs if t in r["tasks"]], len(rs)) for t in tasks)
            + (f" | {_seed_mean(probes, len(rs))} |" if extras else " |"))
    lines += ["", "Paired difference to the same-seed baseline it is paired with (the method's minus the "
              "baseline's; accuracy in points), mean [95% t-interval]:", "",
              "| method | paired with | paired seeds | final val loss | " + " | ".join(tasks) + " |",
              "|---|---|---:|---:|" + "---:|" * len(tasks)]
    for label, by_seed in runs.items():
        if label in pairs.values():
            continue
        base_label = pairs[label]
        base = runs[base_label]
        seeds = sorted(set(by_seed) & set(base))
        loss = paired_difference([by_seed[s]["val_loss"] - base[s]["val_loss"] for s in seeds])
        cells = [_interval(paired_difference([by_seed[s]["tasks"][t][0] - base[s]["tasks"][t][0] for s in seeds
                                              if t in by_seed[s]["tasks"] and t in base[s]["tasks"]]), True, True)
                 for t in tasks]
        lines.append(f"| {names.get(label, label)} | {names.get(base_label, base_label)} | {len(seeds)} | "
                     f"{_interval(loss, False, True)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def during_training_table(cmp_dir: Path, task: str, steps: list[int], names: dict[str, str]) -> str:
    """One task's in-training score (the plotted one: multiple choice where defined) at each step, every arm's
    finished runs pooled: correct / queries with a 95% Wilson interval, and the depths the runs had there."""
    spec = json.loads((cmp_dir / "compare.json").read_text())
    lines = ["| method | runs | " + " | ".join(f"step {s}" for s in steps) + " |", "|---|---:|" + "---|" * len(steps)]
    for arm in spec["arms"]:
        pooled = {s: [0, 0, set()] for s in steps}
        runs = 0
        for seed in spec["seeds"]:
            run = cmp_dir / "runs" / arm["label"] / f"seed{seed}"
            path = run / "eval" / "primitives_during_training.jsonl"
            if not (run / "result.json").is_file() or not path.is_file():
                continue
            runs += 1
            for line in path.read_text().splitlines():
                row = json.loads(line)
                if row["step"] in pooled and task in row["tasks"]:
                    score = plotted_score(row["tasks"][task])
                    pooled[row["step"]][0] += score["correct"]
                    pooled[row["step"]][1] += score["n"]
                    pooled[row["step"]][2].add(row["depth"])
        if not runs:
            continue
        cells = []
        for s in steps:
            correct, n, depths = pooled[s]
            if not n:
                cells.append("—")
                continue
            lo, hi = wilson(correct, n)
            depth = "/".join(str(d) for d in sorted(depths))
            cells.append(f"{_pct(correct / n)} [{100 * lo:.0f}%, {100 * hi:.0f}%] (n={n}, depth {depth})")
        lines.append(f"| {names.get(arm['label'], arm['label'])} | {runs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def collect(cmp_dir: Path, tasks: tuple[str, ...]) -> dict[str, dict[int, dict]]:
    spec = json.loads((cmp_dir / "compare.json").read_text())
    runs: dict[str, dict[int, dict]] = {}
    for arm in spec["arms"]:
        for seed in spec["seeds"]:
            numbers = run_numbers(cmp_dir / "runs" / arm["label"] / f"seed{seed}", tasks)
            if numbers is not None:
                runs.setdefault(arm["label"], {})[seed] = numbers
    assert runs, f"{cmp_dir}: no finished run"
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmp_dir", type=Path)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--name", action="append", default=[], help="LABEL=TEXT: the name shown for an arm")
    ap.add_argument("--pair", action="append", default=[],
                    help="LABEL=BASE_LABEL: pair this arm with that one (default: the comparison's first arm)")
    ap.add_argument("--primitives-only", action="store_true", help="leave out the probe and looping columns")
    ap.add_argument("--during-training", metavar="TASK", help="one task's in-training scores, seeds pooled")
    ap.add_argument("--steps", default="", help="with --during-training: the steps, comma-separated")
    args = ap.parse_args()
    tasks = tuple(args.tasks.split(","))
    names = {**NAMES, **dict(n.split("=", 1) for n in args.name)}
    if args.during_training:
        print(during_training_table(args.cmp_dir, args.during_training, [int(s) for s in args.steps.split(",")], names))
        return
    pairs = dict(n.split("=", 1) for n in args.pair)
    runs = collect(args.cmp_dir, tasks)
    extras = not args.primitives_only
    print(per_run_table(runs, names, tasks, extras), "", per_arm_table(runs, names, tasks, pairs, extras), sep="\n")


if __name__ == "__main__":
    main()
