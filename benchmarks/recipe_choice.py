"""Pick the default recipe's PROP-α: baseline vs MIDAS PROP-1 vs MIDAS PROP-2 at the default size, one seed each.

    python benchmarks/recipe_choice.py [--out runs/recipe-choice] [--doc docs/results/default-recipe.md]

Runs one after another (each in its own process); a run whose result.json exists is reused, so an interrupted study
resumes. Writes a markdown table. This is a quick single-seed check to choose a default, not the honest comparison
(`stackwise compare`, with seeds and an equal-compute baseline, is that).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

VARIANTS = {
    "baseline (6 layers)": ["--config", "baseline"],
    "midas PROP-1": ["--config", "midas", "--growth.alpha", "1"],
    "midas PROP-2": ["--config", "midas", "--growth.alpha", "2"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/recipe-choice")
    ap.add_argument("--doc", default="docs/results/default-recipe.md")
    args = ap.parse_args()
    rows = []
    for name, flags in VARIANTS.items():
        run = Path(args.out) / name.split(" (")[0].replace(" ", "-").lower()
        if not (run / "result.json").is_file():
            cmd = [sys.executable, "-m", "stackwise", "train", *flags, "--out", str(run)]
            print("running:", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        result = json.loads((run / "result.json").read_text())
        rows.append((name, " ".join(flags), result))
    base = rows[0][2]
    lines = [
        "# Choosing the default recipe's PROP-α",
        "",
        "Command: `python benchmarks/recipe_choice.py` (one seed each, the default model size, 500 steps of",
        "16×128 tokens on the bundled corpus, 2-core CPU; runs one after another, so wall-time ratios are indicative",
        "only on a shared machine).",
        "",
        "| run | flags | final val loss | FLOPs vs baseline | training time vs baseline |",
        "|---|---|---:|---:|---:|",
    ]
    for name, flags, r in rows:
        lines.append(f"| {name} | `{flags}` | {r['final_val_loss']:.4f} | {r['flops'] / base['flops']:.3f} | "
                     f"{r['wall_s'] / base['wall_s']:.3f} |")
    Path(args.doc).parent.mkdir(parents=True, exist_ok=True)
    Path(args.doc).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
