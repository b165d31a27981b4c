"""Where does a model's look-up stop transferring? Depth-0 look-ups written in a ladder of surface forms, from the
synthetic generator's own REPL sessions (stackwise.data.synthetic) step by step to the reasoning primitives'
`var0_basic` format (stackwise.evals.primitives), scored by the log-likelihood choice among the five bound values.

Each rung changes one thing from the rung above, so the first rung at chance names the surface difference the
model's look-up circuit does not cross:

  repl        `>>> c = 457` lines, asked `>>> print(c)`, answered on the next line (the generator's own form)
  repl-small  the same with the primitives' values 0-20 (the generator binds 21-999)
  bare        `c = 5` lines without the prompt, asked `>>> print(c)`
  tight       `c=5` lines (no spaces: the primitives' binding), asked `>>> print(c)`
  drill       `c=5` lines, asked `c?` (a drill question, generator version 4)
  blank       ` c=5` lines asked ` c=__ ->` (var0_basic without its `Fill in blank:` header)
  var0_basic  the primitive itself

`--ladder questions` keeps the compact `c=5` bindings and changes only the question: forms that generator version 5
trains on (`c?`, `what does c hold?`, `c = ? gives`), the same with indented bindings, and forms it never writes
(var0_basic's ` c=__ ->` without its header, the same without the space, and the code form's `Question:` / `What
is the value of c?` / `Answer:` lines).

Zero-shot and k-shot (k solved problems of the same rung first, separated by blank lines, as the primitives are
scored). A diagnostic, not a primitive: it is for choosing the generator's forms, never trained on.

    python benchmarks/format_ladder.py RUN_DIR [RUN_DIR ...] [--ladder forms|questions] [--n 100] [--shots 0,5]
        [--checkpoint final|latest|all]
"""

from __future__ import annotations

import argparse
import random
import re
import string
from pathlib import Path

import torch
import yaml

from stackwise import config as config_mod
from stackwise.evals.primitives import BASIC_HEADER
from stackwise.evals.runner import load_tokenizer, models
from stackwise.evals.scoring import StackwiseLM, wilson

# rung: (binding line, question, answer prefix, values); {n} a name, {v} a value
FORMS = {
    "repl": (">>> {n} = {v}", ">>> print({n})\n", "", range(21, 1000)),
    "repl-small": (">>> {n} = {v}", ">>> print({n})\n", "", range(0, 21)),
    "bare": ("{n} = {v}", ">>> print({n})\n", "", range(0, 21)),
    "tight": ("{n}={v}", ">>> print({n})\n", "", range(0, 21)),
    "drill": ("{n}={v}", "{n}?", " ", range(0, 21)),
    "blank": (" {n}={v}", " {n}=__ ->", " ", range(0, 21)),
    "var0_basic": (" {n}={v}", " {n}=__ ->", " ", range(0, 21)),
}
SMALL = range(0, 21)
QUESTIONS = {
    "c?": ("{n}={v}", "{n}?", " ", SMALL),
    "indented c?": (" {n}={v}", " {n}?", " ", SMALL),
    "what does c hold?": ("{n}={v}", "what does {n} hold?", " ", SMALL),
    "c = ? gives": ("{n}={v}", "{n} = ? gives", " ", SMALL),
    "c=__ ->": ("{n}={v}", "{n}=__ ->", " ", SMALL),
    "space c=__ ->": ("{n}={v}", " {n}=__ ->", " ", SMALL),
    "code question": ("{n}={v}", "Question:\nWhat is the value of {n}?\nAnswer:", " ", SMALL),
}
LADDERS = {"forms": FORMS, "questions": QUESTIONS}
RUNGS = {**FORMS, **QUESTIONS}


def re_binding(bind: str) -> str:
    """A rung's binding line as a regular expression capturing (name, value)."""
    return re.escape(bind).replace(re.escape("{n}"), "([a-z])").replace(re.escape("{v}"), r"(\d+)")


def asked_name(rung: str, prompt: str) -> str:
    """The name a rung's prompt asks about (its last line)."""
    ask = RUNGS[rung][1].rstrip("\n")
    pattern = re.escape(ask).replace(re.escape("{n}"), "([a-z])")
    return re.search(pattern + "$", prompt.rstrip("\n"))[1]


def problem(rng: random.Random, rung: str) -> tuple[str, str, list[str]]:
    """(prompt, answer, candidates) of one depth-0 look-up: five names bound to distinct values, one asked."""
    bind, ask, prefix, values = RUNGS[rung]
    names = rng.sample(string.ascii_lowercase, 5)
    vals = rng.sample(values, 5)
    lines = [bind.format(n=n, v=v) for n, v in zip(names, vals)]
    asked = rng.randrange(5)
    prompt = "\n".join(lines) + "\n" + ask.format(n=names[asked])
    if rung == "var0_basic":
        prompt = BASIC_HEADER + prompt
    return prompt, f"{prefix}{vals[asked]}", [f"{prefix}{v}" for v in vals]


def accuracy(lm, rung: str, n: int, shots: int, seed: int) -> tuple[float, tuple[float, float]]:
    rng = random.Random(f"format-ladder:{rung}:{shots}:{seed}")
    right = 0
    for _ in range(n):
        solved = ["".join(problem(rng, rung)[:2]) for _ in range(shots)]
        prompt, answer, candidates = problem(rng, rung)
        scores = lm.loglik("\n\n".join([*solved, prompt]), candidates)
        right += candidates[scores.index(max(scores))] == answer
    return right / n, wilson(right, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--ladder", choices=list(LADDERS), default="forms")
    parser.add_argument("--n", type=int, default=100, help="problems per rung and shot count")
    parser.add_argument("--shots", default="0,5", help="comma-separated numbers of solved problems before the query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", choices=["final", "latest", "all"], default="final")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    shots = [int(s) for s in args.shots.split(",")]
    rungs = LADDERS[args.ladder]
    columns = [f"{rung}, {k}-shot" for k in shots for rung in rungs]
    print("| run (step) | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for run in args.runs:
        cfg = config_mod.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
        tok = load_tokenizer(run / "tokenizer.json")
        for _, step, model in models(run, args.checkpoint):
            lm = StackwiseLM(model.eval(), tok, context=cfg.train.seq_len)
            cells = []
            for k in shots:
                for rung in rungs:
                    acc, (lo, hi) = accuracy(lm, rung, args.n, k, args.seed)
                    cells.append(f"{acc:.0%} [{lo:.0%}, {hi:.0%}]")
            print(f"| {run} ({step}) | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
