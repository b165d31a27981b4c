"""Has a run learned the structure of its own synthetic training text? Scores a run's final model on fresh REPL
sessions from the synthetic generator (stackwise.data.synthetic.program, a seed never used for training data): after
each session's last look-up (`>>> print(name)` or the bare `>>> name`), the log-likelihood choice between the
printed value and up to four other values bound in the same session (chance: 1 / candidates). Reported overall and
for the sessions whose printed name was last bound directly to a number (the easiest case: one look-up, no alias
chain).

This is a diagnostic of the training mix, not a reasoning primitive: the primitives are disjoint from the
generator's templates by design, and a model that is at chance here cannot be expected to transfer to them.

    python benchmarks/synthetic_recall.py RUN_DIR [RUN_DIR ...] --n 300
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

import torch
import yaml

from stackwise import config as config_mod
from stackwise.data.synthetic import program
from stackwise.evals.runner import load_tokenizer, models
from stackwise.evals.scoring import StackwiseLM, wilson


def recall(run: Path, n: int, seed: int, which: str = "final") -> dict:
    cfg = config_mod.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    _, step, model = next(models(run, which))
    lm = StackwiseLM(model, load_tokenizer(run / "tokenizer.json"), context=cfg.train.seq_len)
    rng = random.Random(f"synthetic-recall:{seed}")
    counts = {"all": [0, 0, 0.0], "direct": [0, 0, 0.0]}  # right, n, summed chance
    while counts["all"][1] < n:
        text = program(rng)
        prompt, answer = text.rsplit("\n", 1)
        others = sorted(set(re.findall(r"= (\d+)$", text, re.M)) - {answer})
        rng.shuffle(others)
        candidates = [answer, *others[:4]]
        if len(candidates) < 2:
            continue
        scores = lm.loglik(prompt + "\n", candidates)
        right = scores.index(max(scores)) == 0
        name = re.fullmatch(r">>> (?:print\((\w+)\)|(\w+))", prompt.rsplit("\n", 1)[-1]).group(1, 2)
        name = name[0] or name[1]  # print(x) or the bare x the REPL echoes
        direct = re.findall(rf"^>>> {name} = (.+)$", prompt, re.M)[-1].isdigit()
        for key in ("all", "direct") if direct else ("all",):
            counts[key][0] += right
            counts[key][1] += 1
            counts[key][2] += 1 / len(candidates)
    return {"step": step, **{key: {"accuracy": r / k, "ci95": wilson(r, k), "chance": c / k, "n": k}
                             for key, (r, k, c) in counts.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=300, help="sessions scored per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", choices=["final", "latest"], default="final",
                        help="the final model, or the newest checkpoint of a run still training")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    print("| run | all sessions [95% CI] (chance) | printed name bound to a number [95% CI] (chance) |")
    print("|---|---|---|")
    for run in args.runs:
        r = recall(run, args.n, args.seed, args.checkpoint)
        cells = [f"{v['accuracy']:.1%} [{v['ci95'][0]:.0%}, {v['ci95'][1]:.0%}] ({v['chance']:.1%}, n = {v['n']})"
                 for v in (r["all"], r["direct"])]
        print(f"| {run} (step {r['step']}) | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
