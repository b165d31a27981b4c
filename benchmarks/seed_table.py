"""The per-seed table of a comparison, as markdown: every arm's final validation loss per seed, its paired difference
to the same-seed baseline (mean with a 95% t-interval, from summary.json) and how many paired seeds reach the
baseline's loss (final loss at or below the same-seed baseline's). The study READMEs' tables come from this.
With --pair A:B, a table of paired differences between two arms instead (A's final loss minus B's, seed by seed,
mean with a 95% t-interval, and in how many seeds A is lower). With --events, where each growth arm's train-loss
gap to the same-seed baseline is made (growth_events.json, means over seeds): before the first event, summed across
the events (after − before each), summed between them, after the last, and the final validation gap.

    python benchmarks/seed_table.py CMP_DIR [--name LABEL=TEXT ...] [--digits 4] [--pair A:B ... | --events]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _interval(mean: float, ci: list[float] | None, digits: int = 4) -> str:
    """`+0.0123 [−0.004, +0.028]`, with typographic minus signs (a missing interval: nan)."""
    lo, hi = ci or (float("nan"), float("nan"))
    return f"{mean:+.{digits}f} [{lo:+.3f}, {hi:+.3f}]".replace("-", "−")


def seed_table(summary: list[dict], names: dict[str, str], digits: int = 4) -> str:
    rows = [r for r in summary if r.get("per_seed_final_val_loss")]
    assert rows, "no arm with finished seeds"
    base = rows[0]["per_seed_final_val_loss"]  # compare's first arm is the baseline
    seeds = sorted({int(s) for r in rows for s in r["per_seed_final_val_loss"]})
    head = "| arm | " + " | ".join(f"seed {s}" for s in seeds)
    head += " | paired difference, mean [95% CI] | seeds reaching the baseline |"
    lines = [head, "|---|" + "---:|" * (len(seeds) + 2)]
    for i, row in enumerate(rows):
        per = row["per_seed_final_val_loss"]
        cells = [f"{per[str(s)]:.{digits}f}" if str(s) in per else "" for s in seeds]
        if i == 0:
            diff, reach = "(reference)", ""
        else:
            d = row.get("paired_final_loss_diff") or {}
            diff = _interval(d["mean"], d.get("ci95"), digits) if d else ""
            paired = [s for s in per if s in base]
            reach = f"{sum(per[s] <= base[s] for s in paired)}/{len(paired)}"
        name = names.get(row["method"], row["method"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {diff} | {reach} |")
    return "\n".join(lines)


def pair_table(summary: list[dict], pairs: list[tuple[str, str]], names: dict[str, str]) -> str:
    from stackwise.report import paired_difference

    per = {r["method"]: r["per_seed_final_val_loss"] for r in summary if r.get("per_seed_final_val_loss")}
    lines = ["| comparison | paired difference | lower in |", "|---|---:|---:|"]
    for a, b in pairs:
        assert a in per and b in per, f"no arm {a if a not in per else b} in this comparison"
        diffs = [per[a][s] - per[b][s] for s in per[a] if s in per[b]]
        d = paired_difference(diffs)
        lines.append(f"| {names.get(a, a)} − {names.get(b, b)} | {_interval(d['mean'], d['ci95'])} | "
                     f"{sum(x < 0 for x in diffs)}/{len(diffs)} |")
    return "\n".join(lines)


def event_table(summary: list[dict], events: list[dict], names: dict[str, str]) -> str:
    per = {r["method"]: r["per_seed_final_val_loss"] for r in summary if r.get("per_seed_final_val_loss")}
    base = per[summary[0]["method"]]
    runs: dict[str, dict[int, list[dict]]] = {}
    for e in events:
        runs.setdefault(e["method"], {}).setdefault(e["seed"], []).append(e)
    lines = ["| arm | gap before the first event | summed change across the events | summed change between events "
             "| gap after the last event | final validation gap |", "|---|---:|---:|---:|---:|---:|"]
    for method, by_seed in runs.items():
        cols = []
        for seed, ev in by_seed.items():
            ev = sorted(ev, key=lambda e: e["step"])
            cols.append((ev[0]["gap_before"], sum(e["gap_after"] - e["gap_before"] for e in ev),
                         sum(b["gap_before"] - a["gap_after"] for a, b in zip(ev, ev[1:])), ev[-1]["gap_after"],
                         per[method][str(seed)] - base[str(seed)]))
        means = [sum(c[i] for c in cols) / len(cols) for i in range(5)]
        lines.append(f"| {names.get(method, method)} | " + " | ".join(f"{m:+.3f}".replace("-", "−") for m in means)
                     + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmp_dir", type=Path)
    ap.add_argument("--name", action="append", default=[], help="LABEL=TEXT: show arm LABEL as TEXT")
    ap.add_argument("--digits", type=int, default=4)
    ap.add_argument("--pair", action="append", default=[], help="A:B: the paired differences of arm A minus arm B")
    ap.add_argument("--events", action="store_true", help="where the growth arms' gap to the baseline is made")
    args = ap.parse_args()
    names = dict(n.split("=", 1) for n in args.name)
    summary = json.loads((args.cmp_dir / "summary.json").read_text())
    if args.events:
        events = json.loads((args.cmp_dir / "growth_events.json").read_text())
        print(event_table(summary, events, names))
    elif args.pair:
        print(pair_table(summary, [tuple(p.split(":", 1)) for p in args.pair], names))
    else:
        print(seed_table(summary, names, args.digits))


if __name__ == "__main__":
    main()
