"""Training text whose look-up questions come in open-ended forms: does a question form the model never saw get
answered when the forms it trains on are too many to learn one by one? (docs/results/reasoning, "Open-form drills")

The synthetic generator's drills (stackwise.data.synthetic, since version 6) ask in one of 720 forms put together from a
fixed list of parts; a model fine-tuned on them answered only forms from those parts. Here each drill document draws
its own question form with an open-ended tail and marker (strings of punctuation and short words, in random order),
so that no form repeats often enough to be learned as a template: the model can only answer by finding the asked
name before the blank and looking up its binding. The rest of the text is the generator's own (same kinds and
weights; the published fine-tune's was version 7's). The primitives' templates are kept out exactly as the
generator keeps them out (no `=__ ->`, `=_ ->`, `___`, `Question:`, `Answer:`, `What is the`, `value of`).

    python benchmarks/open_form_drills.py OUT.jsonl [--mb 16] [--seed 0]
    stackwise train ... --data.mix "bundled:0.3,OUT.jsonl:0.7"
    python benchmarks/open_form_drills.py --score RUN_DIR [--n 200]   (has the run learned its own drills?)

`--score` answers whether a model trained on this text learned its drills at all, before asking whether they
transfer: fresh open-form drill documents (a seed never used for training text), the last problem's value chosen by
log-likelihood among the numbers bound in that problem (chance: one over their count), the problems before it in
the same form serving as its shots, as in training.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from stackwise.data import synthetic

SYMBOLS = ("=", "?", "_", "-", ">", "<", ":", "#", "~", "*", ".", "!", "|", "@", "%", "^", "&", "$", "/", "+")
SHORT_WORDS = ("val", "is", "now", "then", "so", "out", "get", "has", "in", "at", "of", "to", "it", "see", "put", "say")
FORBIDDEN = ("=__ ->", "=_ ->", "___", "Question", "Answer", "What is the", "value of", "Fill in", "Program")


def _piece(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return "".join(rng.choice(SYMBOLS) for _ in range(rng.randint(1, 3)))
    return rng.choice(SHORT_WORDS) if rng.random() < 0.7 else synthetic._made_up_word(rng)[:rng.randint(2, 4)]


def _pieces(rng: random.Random, lo: int, hi: int) -> str:
    out = ""
    for _ in range(rng.randint(lo, hi)):
        out += rng.choice(("", " ")) + _piece(rng)
    return out


def open_question_form(rng: random.Random) -> str:
    """A question with its answer, `{n}` the asked name and `{v}` its value: an optional lead, the name, an
    open-ended tail of 0-3 pieces and a marker of 1-2 pieces before the value."""
    while True:
        lead = (_pieces(rng, 1, 2).strip() + " ") if rng.random() < 0.3 else ""
        marker = _pieces(rng, 1, 2) + rng.choice((" ", " ", "\n"))
        after = _pieces(rng, 0, 3) + marker
        if after[:1].isalpha():  # the name stays its own token: a word never runs on from it
            after = " " + after
        form = lead + "{n}" + after + "{v}"
        if not any(f in form for f in FORBIDDEN) and "{" not in form.replace("{n}", "").replace("{v}", ""):
            return form


def open_drill(rng: random.Random) -> str:
    """The generator's drill with its question form drawn open-ended."""
    return synthetic.drill(rng, form=open_question_form)


def documents(seed: int, max_bytes: float):
    """The generator's documents (its kinds and weights) with every drill's question form drawn open-ended, and
    without its quizzes (since version 9), whose `Question:` / `Answer:` frame this text keeps out."""
    pairs = [(open_drill if kind is synthetic.drill else kind, weight)
             for kind, weight in zip(synthetic.KINDS, synthetic.WEIGHTS, strict=True) if kind is not synthetic.quiz]
    kinds, weights = zip(*pairs, strict=True)
    rng = random.Random(f"open-form-drills|{seed}")
    total = 0
    while total < max_bytes:
        doc = rng.choices(kinds, weights)[0](rng)
        total += len(doc) + 1
        yield doc


def drill_query(rng: random.Random) -> tuple[str, str, list[str]]:
    """(prompt, answer, candidates) from a fresh open-form drill: its problems up to the last one's value, that
    value, and every number bound in the last problem (the answer among them), each with the space before it."""
    while True:
        doc = open_drill(rng)
        last = doc.split("\n\n")[-1]
        value = re.search(r"(\s)(\d+)$", doc)
        numbers = list(dict.fromkeys(re.findall(r"(?<![\w])(\d+)(?![\w])", last[:-len(value[2])])))
        if value[2] in numbers and len(numbers) >= 2:
            break
    space = " " if value[1] == " " else ""
    prompt = doc[:value.start(2) - len(space)]
    return prompt, space + value[2], [space + v for v in numbers]


def score(lm, n: int, seed: int) -> tuple[int, float]:
    """(correct, expected correct by chance) over n fresh drills."""
    rng = random.Random(f"open-form-drills-score|{seed}")
    right, chance = 0, 0.0
    for _ in range(n):
        prompt, answer, candidates = drill_query(rng)
        scores = lm.loglik(prompt, candidates)
        right += candidates[scores.index(max(scores))] == answer
        chance += 1 / len(candidates)
    return right, chance


def _score_runs(runs: list[Path], n: int, seed: int) -> None:
    import torch
    import yaml

    from stackwise import config as config_mod
    from stackwise.evals.runner import load_tokenizer, models
    from stackwise.evals.scoring import StackwiseLM, wilson
    torch.set_flush_denormal(True)
    print("| run (step) | own drills, last problem [95% CI] | chance |")
    print("|---|---|---|")
    for run in runs:
        cfg = config_mod.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
        tok = load_tokenizer(run / "tokenizer.json")
        for _, step, model in models(run, "final"):
            right, chance = score(StackwiseLM(model.eval(), tok, context=cfg.train.seq_len), n, seed)
            lo, hi = wilson(right, n)
            print(f"| {run} ({step}) | {right / n:.1%} [{lo:.0%}, {hi:.0%}] | {chance / n:.1%} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", help="the JSONL file to write")
    parser.add_argument("--mb", type=float, default=16.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score", nargs="+", type=Path, metavar="RUN_DIR", help="score runs on fresh drills instead")
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    if args.score:
        return _score_runs(args.score, args.n, args.seed + 1000)  # never a training seed's stream
    if not args.out:
        parser.error("OUT.jsonl or --score RUN_DIR is required")
    with open(args.out, "w") as f:
        for doc in documents(args.seed, args.mb * 1e6):
            f.write(json.dumps({"text": doc}) + "\n")


if __name__ == "__main__":
    main()
