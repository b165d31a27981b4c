"""How many second-hop answers a training step carries, on the look-up toy and on a reasoning run, and how many steps
the run's model would need to see as many as the toy saw before its second hop formed.

An alias answer is the value asked of a name bound to another name (`x=i`, then `What is the value of x?`): reading
it takes two look-ups. The toy (benchmarks/lookup_toy.py --aliases: one character per token, `--batch` x `--seq`)
and a reasoning run on the generator's `aliases` or `exam` kind (that run's own tokenizer, `train.batch_size` x
`train.seq_len`) are counted on the same kind of problems, so the answers per step compare directly. `--toy-answers`
is what the toy needed (about 4.6M alias answers before its jump at step ~30,500: docs/results/reasoning/README.md,
"The plateau ends"); the steps the run needs for as many, at 100% of its text on that kind, follow. The toy's
small problems (`--small`: two or three numbers and one alias) get a row of their own.

    python benchmarks/alias_budget.py RUN_DIR [--kind aliases|exam] [--toy-answers 4.6e6] [--docs 300]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

import yaml

from stackwise.data import synthetic
from stackwise.data.tokenizer import load as load_tokenizer

sys.path.insert(0, str(Path(__file__).parent))
import lookup_toy  # noqa: E402  (a sibling script)

TOY = vars(lookup_toy.build_parser().parse_args([]))  # the toy's defaults (batch, seq)


def alias_answers(doc: str) -> tuple[int, int]:
    """(alias answers, all answers) of a generated document in the code form's question (`x=...` bindings, then
    `What is the value of x?`): an answer is an alias's when its name was last bound to a name, not a number."""
    bound: dict[str, str] = {}
    aliases = answers = 0
    for line in doc.splitlines():
        if m := re.fullmatch(r"([a-z])=(\w+)", line):
            bound[m[1]] = m[2]
        elif m := re.fullmatch(r"What is the value of ([a-z])\?", line):
            answers += 1
            aliases += not bound[m[1]].isdigit()
    return aliases, answers


def per_step(docs: list[str], tokens_per_doc: list[int], batch: int, seq: int) -> float:
    """Alias answers in one step of `batch` windows of `seq` tokens of these documents, laid end to end."""
    return sum(alias_answers(d)[0] for d in docs) / sum(tokens_per_doc) * seq * batch


def toy_per_step(n: int, small: bool = False) -> float:
    """The toy's alias answers per step: its problems (`small`: its `--small` ones), one character per token, at its
    default batch and length."""
    rng = random.Random(0)
    problems = [lookup_toy.problem(rng, "short", aliases=True, small=small) for _ in range(n)]
    return sum(sum(flags) for _, _, flags in problems) / sum(len(t) for t, _, _ in problems) * TOY["seq"] * TOY["batch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a reasoning run's folder (its tokenizer.json and config.yaml)")
    parser.add_argument("--kind", choices=["aliases", "exam"], default="aliases")
    parser.add_argument("--toy-answers", type=float, default=4.6e6)
    parser.add_argument("--docs", type=int, default=300)
    args = parser.parse_args()
    tok = load_tokenizer(args.run / "tokenizer.json")
    cfg = yaml.safe_load((args.run / "config.yaml").read_text())
    batch, seq = cfg["train"]["batch_size"], cfg["train"]["seq_len"]
    make = getattr(synthetic, args.kind)
    docs = [make(random.Random(i)) for i in range(args.docs)]
    run_step = per_step(docs, [len(tok.encode(d + "\n\n").ids) for d in docs], batch, seq)
    toy_step = toy_per_step(args.docs)
    print(f"| text | alias answers per step | steps to {args.toy_answers / 1e6:.1f}M alias answers |\n|---|---:|---:|")
    print(f"| the toy (--aliases, {TOY['batch']} x {TOY['seq']} characters) | {toy_step:.0f} | "
          f"{args.toy_answers / toy_step:,.0f} |")
    small_step = toy_per_step(args.docs, small=True)
    print(f"| the toy's small problems (--small) | {small_step:.0f} | {args.toy_answers / small_step:,.0f} |")
    print(f"| the run, `{args.kind}` kind only ({batch} x {seq} tokens) | {run_step:.0f} | "
          f"{args.toy_answers / run_step:,.0f} |")


if __name__ == "__main__":
    main()
