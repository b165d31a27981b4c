"""Has a run learned the structure of its own synthetic training text? Three measurements on fresh documents from the
synthetic generator (stackwise.data.synthetic, a seed never used for training data), per model:

- **recall**: REPL sessions (`program`) scored after their last look-up (`>>> print(name)` or the bare `>>> name`)
  by the log-likelihood choice between the printed value and up to four other values bound in the same session
  (chance: 1 / candidates); overall, for the sessions whose name was last bound directly to a number (one
  look-up, no alias chain), and apart for the two look-up forms: the bare `>>> x`, whose name is the token it was
  bound with (` x`), and `print(x)`, whose name is another token (`x`, as the code form binds it);
- **quiz recall** (generator version 9 on): the first question of the last problem of a fresh `quiz` (compact
  bindings, then `Question:`, a question and `Answer:`), its value chosen by log-likelihood among up to five
  numbers bound in that problem: the look-up in the frame of the primitives' code form (from version 11 half the
  quizzes ask the code form's own question; before, only questions of the generator's own) (chance: 1 /
  candidates); of all, and apart for the questions that ask a name bound to a number and those that ask an alias;
- **look-up loss**: the mean loss (nats) of the first token of each printed value, against that of the first token
  of each freshly assigned value (`x = 457`: unpredictable, the reference). Equal losses mean no look-up is learned;
- **copy loss**: in `repeat` documents (a word list, then a run of it repeated from a named word), the mean loss of
  the repeated run's tokens after its first word, against that of the list's own tokens. Equal losses mean no
  copying (induction) is learned; a model with induction heads predicts the run almost for free.

This is a diagnostic of the training mix, not a reasoning primitive: the primitives are disjoint from the
generator's templates by design, and a model that has not learned to copy or look up its own text cannot be expected
to transfer either to them.

    python benchmarks/synthetic_recall.py RUN_DIR [RUN_DIR ...] --n 300 [--checkpoint final|latest|all]
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

import torch
import yaml

from stackwise import config as config_mod
from stackwise.data.synthetic import program, quiz, repeat
from stackwise.evals.runner import load_tokenizer, models
from stackwise.evals.scoring import StackwiseLM, wilson


def repl_session(rng: random.Random) -> str:
    """A `program` document written as a REPL session (since generator version 5 some are scripts; every measurement
    here is of the REPL form, the one all versions write)."""
    while not (text := program(rng)).startswith(">>>"):
        pass
    return text


def repeat_from(rng: random.Random) -> str:
    """A `repeat` document that repeats the list from a named word to its end (since version 5 half of them ask for
    the word after a short run instead)."""
    while " on: " not in (text := repeat(rng)):
        pass
    return text


def _rates(counts: dict[str, list]) -> dict:
    """Accuracy with its Wilson interval and the mean chance, per key of {key: [right, n, summed chance]}."""
    return {key: {"accuracy": r / max(k, 1), "ci95": wilson(r, k) if k else (0.0, 1.0), "chance": c / max(k, 1),
                  "n": k} for key, (r, k, c) in counts.items()}


def recall(lm: StackwiseLM, n: int, seed: int) -> dict:
    rng = random.Random(f"synthetic-recall:{seed}")
    # right, n, summed chance; of all sessions, those whose name was last bound to a number, and those ending in the
    # bare echo `>>> x` (the name the same token as where it is bound, ` x`) or in `print(x)` (another token, `x`)
    counts = {"all": [0, 0, 0.0], "direct": [0, 0, 0.0], "echo": [0, 0, 0.0], "print": [0, 0, 0.0]}
    while counts["all"][1] < n:
        text = repl_session(rng)
        prompt, answer = text.rsplit("\n", 1)
        others = sorted(set(re.findall(r"= (\d+)$", text, re.M)) - {answer})
        rng.shuffle(others)
        candidates = [answer, *others[:4]]
        if len(candidates) < 2:
            continue
        scores = lm.loglik(prompt + "\n", candidates)
        right = scores.index(max(scores)) == 0
        name = re.fullmatch(r">>> (?:print\((\w+)\)|(\w+))", prompt.rsplit("\n", 1)[-1]).group(1, 2)
        form = "print" if name[0] else "echo"
        name = name[0] or name[1]  # print(x) or the bare x the REPL echoes
        direct = re.findall(rf"^>>> {name} = (.+)$", prompt, re.M)[-1].isdigit()
        for key in ("all", form, "direct") if direct else ("all", form):
            counts[key][0] += right
            counts[key][1] += 1
            counts[key][2] += 1 / len(candidates)
    return _rates(counts)


def quiz_query(rng: random.Random) -> tuple[str, str, list[str]]:
    """(prompt, answer, other candidates) from a fresh quiz: up to the first `Answer:` of its last problem (the
    question right after the bindings, as in the primitives, should a problem ask several), the value after it, and
    the other numbers bound in that problem."""
    text = quiz(rng)
    head, _, last = text.rpartition("\n\n")
    cut = last.index("\nAnswer: ") + len("\nAnswer:")
    prompt, answer = (head + "\n\n" if head else "") + last[:cut], re.match(r" (\d+)", last[cut:])[1]
    others = sorted(set(re.findall(r"=(\d+)\b", last)) - {answer})
    return prompt, answer, others


def quiz_asks_a_number(prompt: str) -> bool:
    """Whether the last problem's question asks a name bound directly to a number (not an alias)."""
    problem = prompt.rsplit("\n\n", 1)[-1]
    question = problem.rsplit("\n", 2)[-2]
    bound = dict(re.findall(r"(?:^|, |\n)([a-z])=(\w+)", problem))
    asked = [name for name in bound if re.search(rf"(^|\W){name}(\W|$)", question)]
    assert len(asked) == 1, problem
    return bound[asked[0]].isdigit()


def quiz_recall(lm: StackwiseLM, n: int, seed: int) -> dict:
    """Quiz recall over `n` fresh quizzes: of all, and of those whose question asks a name bound to a number ("direct")
    or an alias ("alias")."""
    rng = random.Random(f"synthetic-recall-quiz:{seed}")
    counts = {"all": [0, 0, 0.0], "direct": [0, 0, 0.0], "alias": [0, 0, 0.0]}  # right, n, summed chance
    for _ in range(n):
        prompt, answer, others = quiz_query(rng)
        rng.shuffle(others)
        candidates = [f" {answer}", *(f" {v}" for v in others[:4])]
        scores = lm.loglik(prompt, candidates)
        for key in ("all", "direct" if quiz_asks_a_number(prompt) else "alias"):
            counts[key][0] += scores.index(max(scores)) == 0
            counts[key][1] += 1
            counts[key][2] += 1 / len(candidates)
    return _rates(counts)


def _token_losses(model, tok, text: str) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """The tokens' character spans and each token's loss given the text before it (the first token's is 0)."""
    enc = tok.encode(text)
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids)[0].float(), -1)
    loss = torch.zeros(len(enc.ids))
    loss[1:] = -logp[:-1].gather(1, ids[0, 1:, None])[:, 0]
    return enc.offsets, loss


def _losses_in(offsets, loss, spans: list[tuple[int, int]], first_only: bool, skip_first: bool = False) -> list[float]:
    out = []
    for a, b in spans:
        inside = [i for i, (s, e) in enumerate(offsets) if s >= a and e <= b and e > s and i > 0]
        inside = inside[1:] if skip_first else inside
        out += [loss[i].item() for i in (inside[:1] if first_only else inside)]
    return out


def token_diagnostics(model, tok, n: int, seed: int) -> dict:
    rng = random.Random(f"synthetic-recall-tokens:{seed}")
    got: dict[str, list[float]] = {"looked_up": [], "assigned": [], "run": [], "list": []}
    for _ in range(n):
        text = repl_session(rng)
        offsets, loss = _token_losses(model, tok, text)
        printed = [(m.start(), m.end()) for m in re.finditer(r"(?<=\n)\d+$", text, re.M)]
        assigned = [m.span(1) for m in re.finditer(r"= (\d+)$", text, re.M)]
        got["looked_up"] += _losses_in(offsets, loss, printed, first_only=True)
        got["assigned"] += _losses_in(offsets, loss, assigned, first_only=True)
        text = repeat_from(rng)
        offsets, loss = _token_losses(model, tok, text)
        listed = (len("Words: "), text.index(".\n"))
        run = (text.index(" on: ") + len(" on:"), len(text) - 1)  # after "From X on:", before the final "."
        got["list"] += _losses_in(offsets, loss, [listed], first_only=False)
        got["run"] += _losses_in(offsets, loss, [run], first_only=False, skip_first=True)
    return {k: sum(v) / len(v) for k, v in got.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=300, help="sessions scored per model for recall")
    parser.add_argument("--n-tokens", type=int, default=150, help="documents of each kind for the token losses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", choices=["final", "latest", "all"], default="final",
                        help="the final model, the newest checkpoint of a run still training, or every checkpoint")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    print("| run (step) | recall, all sessions [95% CI] (chance) | recall, name bound to a number [95% CI] (chance) "
          "| quiz recall [95% CI] (chance) | look-up / assigned first-token loss | copied run / list token loss "
          "| recall, bare `>>> x` / `print(x)` [95% CIs] | quiz recall, asked a number / an alias [95% CIs] |")
    print("|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        cfg = config_mod.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
        tok = load_tokenizer(run / "tokenizer.json")
        for _, step, model in models(run, args.checkpoint):
            model.eval()
            lm = StackwiseLM(model, tok, context=cfg.train.seq_len)
            r = recall(lm, args.n, args.seed)
            q = quiz_recall(lm, args.n, args.seed)
            t = token_diagnostics(model, tok, args.n_tokens, args.seed)
            cells = [f"{v['accuracy']:.1%} [{v['ci95'][0]:.0%}, {v['ci95'][1]:.0%}] ({v['chance']:.1%}, n = {v['n']})"
                     for v in (r["all"], r["direct"], q["all"])]
            def pair(a: dict, b: dict) -> str:
                return " / ".join(f"{v['accuracy']:.1%} [{v['ci95'][0]:.0%}, {v['ci95'][1]:.0%}] (n = {v['n']})"
                                  for v in (a, b))
            print(f"| {run} ({step}) | {' | '.join(cells)} | {t['looked_up']:.2f} / {t['assigned']:.2f} "
                  f"| {t['run']:.2f} / {t['list']:.2f} | {pair(r['echo'], r['print'])} "
                  f"| {pair(q['direct'], q['alias'])} |", flush=True)


if __name__ == "__main__":
    main()
