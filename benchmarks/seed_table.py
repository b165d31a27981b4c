"""The per-seed table of a comparison, as markdown: every arm's final validation loss per seed, its paired difference
to the same-seed baseline (mean with a 95% t-interval, from summary.json) and how many paired seeds reach the
baseline's loss (final loss at or below the same-seed baseline's). The study READMEs' tables come from this.

    python benchmarks/seed_table.py CMP_DIR [--name LABEL=TEXT ...] [--digits 4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


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
            lo, hi = d.get("ci95") or (float("nan"), float("nan"))
            diff = f"{d['mean']:+.{digits}f} [{lo:+.3f}, {hi:+.3f}]" if d else ""
            paired = [s for s in per if s in base]
            reach = f"{sum(per[s] <= base[s] for s in paired)}/{len(paired)}"
        name = names.get(row["method"], row["method"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {diff.replace('-', '−')} | {reach} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmp_dir", type=Path)
    ap.add_argument("--name", action="append", default=[], help="LABEL=TEXT: show arm LABEL as TEXT")
    ap.add_argument("--digits", type=int, default=4)
    args = ap.parse_args()
    names = dict(n.split("=", 1) for n in args.name)
    summary = json.loads((args.cmp_dir / "summary.json").read_text())
    print(seed_table(summary, names, args.digits))


if __name__ == "__main__":
    main()
