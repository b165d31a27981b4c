"""Training text whose look-up questions come in open-ended forms: does a question form the model never saw get
answered when the forms it trains on are too many to learn one by one? (docs/results/reasoning, "Open-form drills")

The synthetic generator's drills (stackwise.data.synthetic, version 7) ask in one of 720 forms put together from a
fixed list of parts; a model fine-tuned on them answered only forms from those parts. Here each drill document draws
its own question form with an open-ended tail and marker (strings of punctuation and short words, in random order),
so that no form repeats often enough to be learned as a template: the model can only answer by finding the asked
name before the blank and looking up its binding. The rest of the text is the generator's own (same kinds and
weights). The primitives' templates are kept out exactly as the generator keeps them out (no `=__ ->`, `=_ ->`,
`___`, `Question:`, `Answer:`, `What is the`, `value of`).

    python benchmarks/open_form_drills.py OUT.jsonl [--mb 16] [--seed 0]
    stackwise train ... --data.mix "bundled:0.3,OUT.jsonl:0.7"
"""

from __future__ import annotations

import argparse
import json
import random

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
    drawn = synthetic.question_form
    synthetic.question_form = open_question_form  # drill() draws its form through this name
    try:
        return synthetic.drill(rng)
    finally:
        synthetic.question_form = drawn


def documents(seed: int, max_bytes: float):
    """The generator's documents (its kinds and weights) with every drill's question form drawn open-ended."""
    kinds = [open_drill if kind is synthetic.drill else kind for kind in synthetic.KINDS]
    rng = random.Random(f"open-form-drills|{seed}")
    total = 0
    while total < max_bytes:
        doc = rng.choices(kinds, synthetic.WEIGHTS)[0](rng)
        total += len(doc) + 1
        yield doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--mb", type=float, default=16.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with open(args.out, "w") as f:
        for doc in documents(args.seed, args.mb * 1e6):
            f.write(json.dumps({"text": doc}) + "\n")


if __name__ == "__main__":
    main()
