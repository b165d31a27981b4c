"""The optimizer study's two tables (docs/results/optimizers/README.md, "Main part"), as markdown, from its
comparison's summary.json and compare.json: every arm against the AdamW baseline (final loss, paired difference,
seeds reaching AdamW's final loss, per-seed iso-loss speedups with 95% t-intervals over the seeds that reach it, and
the seed-mean curve's speedup, which counts every seed), and each MIDAS arm against its own optimizer's fixed-depth
arm (paired difference, seeds reaching that arm's loss, compute-equivalent speedup with a 95% t-interval).

    python benchmarks/optimizer_tables.py [CMP_DIR]     (default docs/results/optimizers/main)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stackwise.report import t95_half_width

NAMES = {"adamw": "AdamW", "muon": "Muon", "soap": "SOAP", "psgd": "PSGD-Kron", "sophia": "Sophia-G"}


def arm_names(spec: dict) -> dict[str, str]:
    """label -> `SOAP + MIDAS`-style name, from each arm's optimizer and growth method."""
    names = {}
    for arm in spec["arms"]:
        settings = {**spec["common"], **arm["overrides"]}
        optimizer = NAMES.get(settings.get("optim.name", "adamw"), settings.get("optim.name"))
        growth = settings.get("growth.method", "none")
        names[arm["label"]] = optimizer + ("" if growth == "none" else f" + {growth.upper()}")
    return names


def interval(stat: dict) -> tuple[float, float] | None:
    """95% t-interval of a mean from its std and n (None below 2)."""
    n, mean, std = stat["n"], stat["mean"], stat["std"]
    if n < 2 or mean is None:
        return None
    half = t95_half_width(std, n)
    return mean - half, mean + half


def speed(stat: dict) -> str:
    ci = interval(stat)
    return "—" if stat["mean"] is None else f"{stat['mean']:.2f}×" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def diff(stat: dict, bold: bool = False) -> str:
    if stat["mean"] is None:
        return "—"
    text = f"{stat['mean']:+.3f}" + (f" [{stat['ci95'][0]:+.3f}, {stat['ci95'][1]:+.3f}]" if stat["ci95"] else "")
    return f"**{text}**" if bold and stat["ci95"] and (stat["ci95"][0] > 0 or stat["ci95"][1] < 0) else text


def against_adamw(rows: list[dict], names: dict[str, str]) -> str:
    lines = ["| arm | seeds | final val loss | paired difference to AdamW [95% CI] | seeds reaching AdamW's final loss "
             "| iso-loss speedup per seed, FLOPs / calibrated time [95% CI] | mean curve, FLOPs / calibrated |",
             "|---|---:|---:|---:|---:|---|---|"]
    for i, r in enumerate(rows):
        loss, iso, curve = r["final_val_loss"], r["iso_loss_speedup"], r["mean_curve_speedup"]
        reached, total = map(int, r["reached_baseline_loss"].split("/"))
        per_seed = f"{speed(iso['flops'])} / {speed(iso['calibrated_wall'])}" if reached else "—"
        if i == 0:
            per_seed = "1 / 1"
        if 0 < reached < total:
            per_seed += f" (the {reached} that reach it)"
        mean_curve = (f"{curve['flops']:.2f}× / {curve['calibrated_wall']:.2f}×" if curve["flops"] is not None
                      else f"— (gap {curve['gap']:+.3f})")
        paired = "(reference)" if i == 0 else diff(r["paired_final_loss_diff"], bold=True)
        lines.append(f"| {names[r['method']]} | {loss['n']} | {loss['mean']:.4f} ± {loss['std'] or 0:.4f} | {paired} "
                     f"| {r['reached_baseline_loss']} | {per_seed} | {mean_curve} |")
    return "\n".join(lines)


def against_own_arm(rows: list[dict], names: dict[str, str]) -> str:
    lines = ["| MIDAS vs its own fixed-depth arm | seeds | paired difference [95% CI] | seeds reaching its final loss "
             "| compute-equivalent speedup, FLOPs / calibrated [95% CI] | mean curve, compute-equivalent |",
             "|---|---:|---:|---:|---|---|"]
    for r in rows:
        own = r.get("against_own_baseline") or (r if names[r["method"]] == "AdamW + MIDAS" else None)
        if own is None:
            continue
        ce, curve = own["compute_equivalent_speedup"], own["mean_curve_speedup"]["compute_equivalent"]
        lines.append(f"| {names[r['method']].removesuffix(' + MIDAS')} | {own['final_val_loss']['n']} "
                     f"| {diff(own['paired_final_loss_diff'], bold=True)} | {own['reached_baseline_loss']} "
                     f"| {speed(ce['flops'])} / {speed(ce['calibrated_wall'])} "
                     f"| {curve['flops']:.2f}× / {curve['calibrated_wall']:.2f}× |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cmp", nargs="?", type=Path, default=Path("docs/results/optimizers/main"))
    args = parser.parse_args()
    rows = [r for r in json.loads((args.cmp / "summary.json").read_text()) if r.get("status") == "ok"]
    names = arm_names(json.loads((args.cmp / "compare.json").read_text()))
    print(against_adamw(rows, names), "", against_own_arm(rows, names), sep="\n")


if __name__ == "__main__":
    main()
