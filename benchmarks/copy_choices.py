"""Which word does a model pick on the copying primitives? A histogram of its multiple-choice picks by position
relative to the repeated run, to tell a model that copies from one that does not.

copy_random / copy_words (stackwise.evals.primitives) list ten words, repeat a run of five of them, and ask for the
word that followed the run in the list. Each pick is reported by its offset from the run's first word in the list:
0-4 are the run's own words (a model that repeats what it just saw), 5 is the right answer, negative offsets and 6-9
are the other words of the list. Chance puts a tenth of the picks on each word.

    python benchmarks/copy_choices.py RUN_DIR [RUN_DIR ...] --n 100 [--shots 5] [--checkpoint final|latest|all]
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

import torch
import yaml

from stackwise import config as config_mod
from stackwise.evals.primitives import TASKS, kshot
from stackwise.evals.runner import load_tokenizer, models
from stackwise.evals.scoring import StackwiseLM

COPY_TASKS = ("copy_random", "copy_words")


def pick_offsets(lm, task: str, n: int, shots: int, seed: int) -> Counter:
    """Offsets (from the run's first word in the list) of the model's multiple-choice picks over n queries."""
    rng = random.Random(f"copy-choices:{task}:{seed}")
    offsets: Counter = Counter()
    for _ in range(n):
        prompt, example = kshot(TASKS[task], rng, shots)
        scores = lm.loglik(prompt, list(example.candidates))
        pick = scores.index(max(scores))
        run_start = example.candidates.index(example.answer) - 5  # the candidates are the list's words, in order
        offsets[pick - run_start] += 1
    return offsets


def summary(offsets: Counter) -> dict[str, int]:
    return {"run": sum(offsets[k] for k in range(5)), "answer": offsets[5],
            "other": sum(v for k, v in offsets.items() if not 0 <= k <= 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", choices=["final", "latest", "all"], default="final")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    print("| run (step) | task | picks in the run (offsets 0-4) | the answer (5) | elsewhere | by offset |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        cfg = config_mod.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
        tok = load_tokenizer(run / "tokenizer.json")
        for _, step, model in models(run, args.checkpoint):
            lm = StackwiseLM(model.eval(), tok, context=cfg.train.seq_len)
            for task in COPY_TASKS:
                offsets = pick_offsets(lm, task, args.n, args.shots, args.seed)
                s = summary(offsets)
                hist = " ".join(f"{k}:{offsets[k]}" for k in sorted(offsets))
                print(f"| {run} ({step}) | {task} | {s['run']} | {s['answer']} | {s['other']} | {hist} |", flush=True)


if __name__ == "__main__":
    main()
