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

`transfer RUN` walks from the quiz frame to the primitives' var0_code prompt one change at a time and scores each:
bindings spaced (` x=457`) or compact (`x=457`, as the primitives write them), values 21-999 (the generator's) or
0-20 (the primitives'), with or without the code form's header, zero or five solved examples before the query. Five
names bound to numbers, one asked with the code form's question; the answer chosen among the five values.

    python benchmarks/quiz_proxy.py transfer runs/quiz-proxy [--checkpoint final] [--n 150]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path

import torch
import yaml

from stackwise import config as config_mod
from stackwise.data import synthetic
from stackwise.evals.primitives import CODE_HEADER
from stackwise.evals.runner import load_tokenizer, models
from stackwise.evals.scoring import StackwiseLM, wilson


def problem(rng: random.Random, spaced: bool) -> tuple[list[str], dict[str, int], dict[str, bool]]:
    """A problem's binding lines, the value of each name, and whether each is bound directly to a number."""
    lines, value_of, depth = synthetic.bindings_block(rng, " {n}={v}" if spaced else synthetic.COMPACT)
    return lines, value_of, {n: d == 0 for n, d in depth.items()}


def frame(rng: random.Random, single: bool) -> str:
    return synthetic.CODE_FRAME if single else synthetic.quiz_form(rng)


def quiz(rng: random.Random, spaced: bool, single: bool) -> str:
    ask = frame(rng, single)  # (drawn first: the text written before `synthetic.every_name_asked` existed)
    return synthetic.every_name_asked(rng, " {n}={v}" if spaced else synthetic.COMPACT, ask)


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


def transfer_example(rng: random.Random, spaced: bool, small: bool, header: bool) -> tuple[str, int, list[int]]:
    """A var0_code-shaped query (prompt up to `Answer:`, answer, the five bound values), in the variant asked."""
    names = rng.sample(synthetic.LETTERS, 5)
    values = rng.sample(range(21) if small else synthetic.VALUES, 5)
    lines = [f"{' ' if spaced else ''}{n}={v}" for n, v in zip(names, values)]
    i = rng.randrange(5)
    prompt = (CODE_HEADER if header else "") + "\n".join(lines) + "\nQuestion:\n" + \
        synthetic.CODE_QUESTION.format(n=names[i]) + "\nAnswer:"
    return prompt, values[i], values


def transfer(run: Path, which: str, n: int) -> None:
    tok = load_tokenizer(run / "tokenizer.json")
    context = config_mod.from_dict(yaml.safe_load((run / "config.yaml").read_text())).train.seq_len
    print("| step | bindings | values | header | shots | accuracy [95% CI] |\n|---:|---|---|---|---:|---:|")
    for _, step, model in models(run, which):
        lm = StackwiseLM(model, tok, context=context)
        for spaced, small, header, shots in itertools.product((True, False), (False, True), (False, True), (0, 5)):
            rng, hits = random.Random("quiz-proxy-transfer"), 0
            for _ in range(n):
                solved = "".join(f"{p} {a}\n\n" for p, a, _ in
                                 (transfer_example(rng, spaced, small, header) for _ in range(shots)))
                prompt, answer, values = transfer_example(rng, spaced, small, header)
                scores = lm.loglik(solved + prompt, [f" {answer}", *(f" {v}" for v in values if v != answer)])
                hits += scores.index(max(scores)) == 0
            lo, hi = wilson(hits, n)
            print(f"| {step} | {'` x=457`' if spaced else '`x=457`'} | {'0-20' if small else '21-999'} | "
                  f"{'yes' if header else 'no'} | {shots} | {hits / n:.1%} [{lo:.0%}, {hi:.0%}] |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["write", "score", "transfer"])
    parser.add_argument("path", type=Path, help="the .jsonl to write, or the run to score or walk")
    parser.add_argument("--spaced", action="store_true")
    parser.add_argument("--single", action="store_true")
    parser.add_argument("--mb", type=float, default=16.0)
    parser.add_argument("--checkpoint", default="all", help="final | latest | all")
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    if args.what == "write":
        write(args.path, args.spaced, args.single, args.mb)
    elif args.what == "score":
        score(args.path, args.spaced, args.single, args.checkpoint, args.n)
    else:
        transfer(args.path, args.checkpoint, args.n)


if __name__ == "__main__":
    main()
