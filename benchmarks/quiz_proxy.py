"""Can the reasoning recipe's model learn the look-up in the quiz frame from quizzes alone? Writes text of nothing but
quizzes that ask every name they bind (the generator's quiz problems, `stackwise.data.synthetic.quiz`, ask one:
compact bindings, then each name asked as `Question:` / a question / `Answer: 457`), plain or in two variants that
make the look-up easier, and scores a run trained on it.

  --spaced   bindings written ` x=457`, so that the name is the same token where it is bound and where it is asked
             (` x`); the generator's `x=457` binds `x` and asks ` x`, two different tokens
  --single   every question is the primitives' code-form question (`What is the value of x?`), not one of nine

The score is the first question after a held-out problem's bindings (the primitives' shape): the asked value chosen
by log-likelihood among up to five numbers bound in that problem (chance: 1 / candidates), apart for names bound
to a number and aliases.

    python benchmarks/quiz_proxy.py write quizzes.jsonl [--spaced] [--single] [--mb 16]
    stackwise train --config reasoning --out runs/quiz-proxy --data.mix null --data.train quizzes.jsonl \\
        --model.canon AC --model.canon_kernel 8 --train.steps 1500 --eval.primitives_every 0 \\
        --checkpoint.every 250 --checkpoint.keep 10
    python benchmarks/quiz_proxy.py score runs/quiz-proxy [--spaced] [--single] [--checkpoint all] [--n 200]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
import yaml

from stackwise import config as config_mod
from stackwise.data import synthetic
from stackwise.evals.runner import load_tokenizer, models
from stackwise.evals.scoring import StackwiseLM, wilson


def problem(rng: random.Random, spaced: bool) -> tuple[list[str], dict[str, int], dict[str, bool]]:
    """A problem's binding lines, the value of each name, and whether each is bound directly to a number."""
    lines, value_of = synthetic.bindings_block(rng, " {n}={v}" if spaced else synthetic.COMPACT)
    direct = {line.split("=")[0].strip(): line.split("=")[1].isdigit() for line in lines}
    return lines, value_of, direct


def frame(rng: random.Random, single: bool) -> str:
    return "Question:\n" + synthetic.CODE_QUESTION + "\nAnswer: {v}" if single else synthetic.quiz_form(rng)


def quiz(rng: random.Random, spaced: bool, single: bool) -> str:
    ask, problems = frame(rng, single), []
    for _ in range(rng.randint(1, 3)):
        lines, value_of, _ = problem(rng, spaced)
        asked = list(value_of)
        rng.shuffle(asked)
        problems.append("\n".join(lines + [ask.format(n=n, v=value_of[n]) for n in asked]))
    return "\n\n".join(problems)


def write(path: Path, spaced: bool, single: bool, mb: float) -> None:
    rng, total = random.Random(0), 0
    with path.open("w") as f:
        while total < mb * 1e6:
            doc = quiz(rng, spaced, single)
            f.write(json.dumps({"text": doc}) + "\n")
            total += len(doc) + 1


def score(run: Path, spaced: bool, single: bool, which: str, n: int) -> None:
    tok = load_tokenizer(run / "tokenizer.json")
    context = config_mod.from_dict(yaml.safe_load((run / "config.yaml").read_text())).train.seq_len
    print("| step | asked a number [95% CI] | asked an alias [95% CI] | chance |\n|---:|---:|---:|---:|")
    for _, step, model in models(run, which):
        lm, rng = StackwiseLM(model, tok, context=context), random.Random("quiz-proxy-held-out")
        counts = {True: [0, 0], False: [0, 0]}
        chance = 0.0
        for _ in range(n):
            ask = frame(rng, single)
            lines, value_of, direct = problem(rng, spaced)
            name = rng.choice(list(value_of))
            question = ask.format(n=name, v=value_of[name])
            prompt = "\n".join(lines) + "\n" + question[:question.index("Answer:") + len("Answer:")]
            others = sorted(set(value_of.values()) - {value_of[name]})
            rng.shuffle(others)
            candidates = [f" {value_of[name]}", *(f" {v}" for v in others[:4])]
            scores = lm.loglik(prompt, candidates)
            counts[direct[name]][0] += scores.index(max(scores)) == 0
            counts[direct[name]][1] += 1
            chance += 1 / len(candidates) / n
        cells = [f"{r / k:.1%} [{wilson(r, k)[0]:.0%}, {wilson(r, k)[1]:.0%}] (n = {k})" for r, k in counts.values()]
        print(f"| {step} | {cells[0]} | {cells[1]} | {chance:.1%} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["write", "score"])
    parser.add_argument("path", type=Path, help="the .jsonl to write, or the run to score")
    parser.add_argument("--spaced", action="store_true")
    parser.add_argument("--single", action="store_true")
    parser.add_argument("--mb", type=float, default=16.0)
    parser.add_argument("--checkpoint", default="all", help="final | latest | all")
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    if args.what == "write":
        write(args.path, args.spaced, args.single, args.mb)
    else:
        score(args.path, args.spaced, args.single, args.checkpoint, args.n)


if __name__ == "__main__":
    main()
