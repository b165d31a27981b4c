"""Time of each growth event, including the rebuild and (with compile) the recompile, as a fraction of the run.

    python benchmarks/growth_overhead.py [--config midas] [--out runs/growth-overhead] [dotted flags ...]
    python benchmarks/growth_overhead.py --config midas --train.compile true

Trains the recipe with per-step logging, then prices each growth event as
    the event itself (unwrap, copy layers, rebuild optimizer with state transfer, re-wrap; from events.jsonl)
  + the first step after it minus the median step at that depth (lazy recompilation and allocator warm-up)
and reports each event and their sum as a fraction of the run's training time (wall_s, which includes both).
Target: <= 2% of the run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path


def analyse(run: Path) -> list[dict]:
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    step_s = {}
    prev = 0.0
    for m in metrics:
        step_s[m["step"]] = (m["wall_s"] - prev, m["depth"])
        prev = m["wall_s"]
    total = metrics[-1]["wall_s"]
    rows = []
    for e in events:
        first = e["step"] + 1  # metrics count completed steps: the first step at the new depth is step+1
        same_depth = [s for k, (s, d) in step_s.items() if d == e["depth"] and k > first]
        extra = max(0.0, step_s[first][0] - e["seconds"] - statistics.median(same_depth)) if same_depth else 0.0
        cost = e["seconds"] + extra
        rows.append({"step": e["step"], "depth": e["depth"], "event_s": e["seconds"], "first_step_extra_s": extra,
                     "fraction_of_run": cost / total})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="midas")
    ap.add_argument("--out", default="runs/growth-overhead")
    args, rest = ap.parse_known_args()
    run = Path(args.out)
    cmd = [sys.executable, "-m", "stackwise", "train", "--config", args.config, "--train.log_every", "1",
           "--eval.every", "0", "--out", str(run), *rest]
    print("running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rows = analyse(run)
    print("| growth at step | new depth | event s | first-step extra s | fraction of run |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['step']} | {r['depth']} | {r['event_s']:.4f} | {r['first_step_extra_s']:.4f} | "
              f"{r['fraction_of_run']:.3%} |")
    print(f"all growth events: {sum(r['fraction_of_run'] for r in rows):.3%} of training time")


if __name__ == "__main__":
    main()
