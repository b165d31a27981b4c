"""Can stackwise's Transformer learn a variable look-up, with and without Canon layers? Trains the same small model
twice, on the same stream of look-up problems, without and with Canon layers (`model.canon`), and prints how often
each predicts the first digit of an asked value right on held-out problems.

A problem binds three to ten one-letter names to numbers (21-999), one per line (`q=794`), then asks every name
once, in random order: `q?794` (`--form short`) or `Question:\\nWhat is the value of q?\\nAnswer: 794` (`--form
quiz`, the frame of the primitives' code form). Text is tokenized by character, so every digit is its own token.
Predicting the asked value's first digit takes a look-up: find the line that bound the asked name and copy what
follows its `=`, two tokens after the name. The predicted digit is scored at the first digit of each answer
(chance: about 1 in 9 for any digit, or 1 in the number of values bound for a model that copies a bound value).

    python benchmarks/lookup_toy.py [--form short|quiz --layers 4 --d-model 64 --heads 1 --steps 2000
                                     --batch 16 --seq 256 --lr 3e-3 --init-std 0.1 --weight-decay 0.1
                                     --attn-gain 1 --seed 0 --canon A --canon-kernel 4 --canon-init zero
                                     --every 250 --aliases --trace START:END --near STEP --ask-near STEP
                                     --small STEP --small-share P --ask-source STEP
                                     --answer-loss --grow STEP[,STEP]
                                     --grow-method midas --block 2 --tie K --save PREFIX --stop STEP --attention]

`--aliases` writes the bindings of the generator's `aliases` kind (names bound to numbers, then aliases of them) and
scores names bound to numbers and aliases apart: an alias's value takes two look-ups (its source's name, then that
name's value). Curricula for that second hop: `--trace START:END` writes the names an alias's answer goes
through (`o?i=794`) and drops them between steps START and END (scored only where dropped); `--near STEP` binds
each alias right after its source up to step STEP; `--ask-near STEP` asks each alias on the line after its own
binding up to step STEP; `--small STEP` trains on problems of two or three numbers and one alias up to step STEP
(`--small-share P`: only that share of the problems, the rest the usual ones); `--ask-source STEP` also asks
every alias what it is bound to (`x:i`, unscored) up to step STEP, rewarding the read of an alias's own line by
itself.
`--answer-loss` trains on the scored answers' digits only, as two-hop studies do (Guo et al. 2025, arXiv
2502.13913), instead of on every character. Held-out problems keep the usual form; with a curriculum option,
progress also scores held-out problems in the first stage's form.
Optimisation levers for the second hop's plateau: `--lr`, `--batch`, `--weight-decay` (AdamW's), and `--attn-gain G`
(every attention logit multiplied by G, a softmax temperature of 1/G: Hoffmann et al. 2024, arXiv 2310.12956, trace
the plateaus of two-step tasks to the softmax's small gradients for the queries and keys).

Depth as the growth methods shape it: `--grow STEP[,STEP...]` starts with `--layers` minus one block (`--block`) per
step and grows by a block at each step with a growth method's source map (`--grow-method`, default midas; copy init,
the optimizer's state copied from each source as stackwise does), so the last stage has `--layers` layers; `--tie K`
trains a looped model instead: `--layers / K` layers whose stack is run K times (weights shared). `--save PREFIX`
keeps each model's state at every score and resumes from it when run again (the problems replayed to where it
stopped, so the result is the same as an uninterrupted run's), for runs longer than a sitting; `--stop STEP` ends a
run after that step (its LR schedule still laid over `--steps`), to be lengthened later.
`--seed S` draws another model init and training stream (the held-out problems stay the same), for repeats.
`--attention` prints, at the end, where each layer looks when it predicts an answer's first digit: its attention on
the asked name's binding line and, for an alias, on its source's (a saved run resumed at its last step prints it
without training further).
"""

from __future__ import annotations

import argparse
import random
import re
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from stackwise import config as config_mod
from stackwise import operators
from stackwise.data import synthetic
from stackwise.grow import grow_layers, parameter_sources
from stackwise.model import Transformer, apply_rope
from stackwise.optim import OptimizerSet, transfer_state


def near_sources(lines: list[str]) -> list[str]:
    """Binding lines (`o=i`) reordered so that each alias's line comes right after its source's line (the numbers
    keep their order; aliases of one source follow it in their order)."""
    after: dict[str, list[str]] = {}
    for line in lines:
        if not line[2:].isdigit():
            after.setdefault(line[2:], []).append(line)

    def chain(line: str) -> list[str]:
        return [line] + [x for alias in after.get(line[0], []) for x in chain(alias)]
    return [x for line in lines if line[2:].isdigit() for x in chain(line)]


def problem(rng: random.Random, form: str, gap: int = 0, aliases: bool = False, trace: float = 0.0,
            near: bool = False, ask_near: bool = False, small: bool = False,
            ask_source: bool = False) -> tuple[str, list[int], list[bool]]:
    """A problem's text, the character offsets of its answers' first digits, and whether each asked name is an
    alias. `gap` dashes stand between a short question and its answer (`q?---794`), putting the name `gap`
    characters further from the answer. `aliases`: the bindings of the generator's `aliases` kind instead (four to
    six numbers, then three to five aliases of distinct numbers, a quarter two deep; `synthetic.alias_block`).
    `trace`: the chance that a short answer to an alias writes the names it goes through before the value
    (`o?i=794`, two deep `o?p=i=794`); such answers are not scored (no offset). `near`: each alias bound right
    after its source (`near_sources`). `ask_near`: each alias asked on the line after its own binding (`o=i`,
    `o?794`), where its source's name is three characters back. `small`: two or three names bound to distinct
    numbers and one alias of one of them instead of `alias_block`'s problems. `ask_source`: every alias is also asked
    what it is bound to (`x:i`, short form, not scored), at a random place among the questions."""
    if aliases and small:  # (the generator's `small_aliases` problems)
        lines, value, depth = synthetic.small_alias_block(rng, "{n}={v}")
        names = list(value)
    elif aliases:
        lines, value, depth = synthetic.alias_block(rng, "{n}={v}")
        lines = near_sources(lines) if near else lines
        names = list(value)
    else:
        names = rng.sample(string.ascii_lowercase, rng.randint(3, 10))
        value, depth = {n: rng.choice(synthetic.VALUES) for n in names}, dict.fromkeys(names, 0)
        lines = [f"{n}={value[n]}" for n in names]
    source = {line[0]: line[2:] for line in lines}
    asked = list(names)
    rng.shuffle(asked)
    early = {n for n in names if depth[n]} if ask_near else set()
    text, answers, alias = "", [], []

    def ask(n: str) -> None:
        nonlocal text
        text += f"{n}?" + "-" * gap if form == "short" else f"Question:\nWhat is the value of {n}?\nAnswer: "
        if depth[n] and form == "short" and trace and rng.random() < trace:
            hop = source[n]
            while not hop.isdigit():
                text, hop = text + f"{hop}=", source[hop]
        else:
            answers.append(len(text))
            alias.append(depth[n] > 0)
        text += f"{value[n]}\n"

    for line in lines:
        text += line + "\n"
        if line[0] in early:
            ask(line[0])
    questions = [n for n in asked if n not in early]
    if ask_source:
        for n in (n for n in names if depth[n]):
            questions.insert(rng.randint(0, len(questions)), f"{n}:")
    for q in questions:
        if q.endswith(":"):
            text += f"{q}{source[q[0]]}\n"
        else:
            ask(q)
    return text + "\n", answers, alias


def encode(text: str) -> list[int]:
    return [min(ord(c), 127) for c in text]


def stream(rng: random.Random, form: str, batch: int, seq: int, gap: int = 0, aliases: bool = False,
           trace=lambda: 0.0, near=lambda: False, ask_near=lambda: False, small=lambda: False,
           ask_source=lambda: False):
    """Batches of problems and, beside them, which characters are the digits of a scored answer (`answer_digits`);
    `trace()`, `near()`, `ask_near()`, `small()` and `ask_source()` give `problem`'s options for the next problem
    (they may change as training goes on)."""
    buf: list[int] = []
    marks: list[bool] = []
    size = batch * (seq + 1)
    while True:
        while len(buf) < size:
            text, answers, _ = problem(rng, form, gap, aliases, trace(), near(), ask_near(), small(), ask_source())
            buf += encode(text)
            marks += answer_digits(text, answers)
        yield torch.tensor(buf[:size]).view(batch, seq + 1), torch.tensor(marks[:size]).view(batch, seq + 1)
        buf, marks = buf[size:], marks[size:]


def answer_digits(text: str, answers: list[int]) -> list[bool]:
    """For each character of a problem, whether it is a digit of an answer that starts at one of `answers`."""
    marks = [False] * len(text)
    for a in answers:
        while a < len(text) and text[a].isdigit():
            marks[a], a = True, a + 1
    return marks


def _shares(right: list[float], total: list[int]) -> tuple[float, float]:
    """right / total of names bound to numbers and of aliases; nan where there are none."""
    return tuple(r / t if t else float("nan") for r, t in zip(right, total))


def predictions(model: Transformer, held_out: list[tuple[str, list[int], list[bool]]],
                seq: int) -> list[tuple[list[int], torch.Tensor]]:
    """Each held-out problem's characters (the first `seq`) and the model's top prediction after each of them."""
    model.eval()
    with torch.no_grad():
        out = [(ids, model(torch.tensor([ids]))[0].argmax(-1)) for ids in (encode(t)[:seq] for t, _, _ in held_out)]
    model.train()
    return out


def accuracy(model: Transformer, held_out: list[tuple[str, list[int], list[bool]]], seq: int) -> tuple[float, float]:
    """Share of answers whose first digit is the model's top prediction: of names bound to numbers, and of aliases
    (nan where there are none)."""
    right, total = [0, 0], [0, 0]
    for (_, answers, alias), (ids, pred) in zip(held_out, predictions(model, held_out, seq)):
        for a, is_alias in zip(answers, alias):
            if a < len(ids):
                right[is_alias] += int(pred[a - 1] == ids[a])
                total[is_alias] += 1
    return _shares(right, total)


def attention_shares(model: Transformer, held_out: list[tuple[str, list[int], list[bool]]],
                     seq: int) -> list[dict[str, float]]:
    """Where each layer looks when it predicts an answer's first digit (from the `?` before it), in the short form:
    per layer position, the mean attention weight (over heads and answers) on the asked name's own binding line
    (`x=i` and its newline: where a look-up reads what the name holds) and, for an alias, on its source's binding
    line (`i=828`: where a second hop would read the value). Keys: `number: own line`, `alias: own line`,
    `alias: source's line`."""
    weights: list[torch.Tensor] = []

    def keep(attn, inputs):  # recompute the attention pattern from the block's normed input
        h, cos, sin = inputs[:3]
        B, T, _ = h.shape
        q = attn.q_proj(h).view(B, T, attn.n_heads, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(B, T, attn.n_kv_heads, attn.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k = k.repeat_interleave(attn.n_heads // attn.n_kv_heads, dim=1)
        scores = (q @ k.transpose(-1, -2)) / attn.head_dim ** 0.5
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        weights.append(scores.masked_fill(~causal, float("-inf")).softmax(-1)[0].mean(0))  # (T, T)

    hooks = [layer.self_attn.register_forward_pre_hook(keep) for layer in dict.fromkeys(model.layers)]
    sums: list[dict[str, float]] = [{} for _ in model.layers]
    counts: dict[str, int] = {}
    model.eval()
    try:
        with torch.no_grad():
            for text, answers, alias in held_out:
                weights.clear()
                model(torch.tensor([encode(text)[:seq]]))
                bindings = list(re.finditer(r"^([a-z])=(\w+)$", text, re.M))
                spans = {m[1]: (m.start(), m.end() + 1) for m in bindings}
                source = {m[1]: m[2] for m in bindings}
                for a, is_alias in zip(answers, alias):
                    if a >= min(seq, len(text)) or text[a - 1] != "?":
                        continue
                    name = text[a - 2]
                    looks = [("alias: own line" if is_alias else "number: own line", spans[name])]
                    if is_alias:
                        looks.append(("alias: source's line", spans[source[name]]))
                    for key, (start, end) in looks:
                        counts[key] = counts.get(key, 0) + 1
                        for i, w in enumerate(weights):
                            sums[i][key] = sums[i].get(key, 0.0) + float(w[a - 1, start:end].sum())
    finally:
        for hook in hooks:
            hook.remove()
        model.train()
    return [{key: total[key] / counts[key] for key in counts} for total in sums]


def held_out_problems(args, first_stage: bool = False) -> list[tuple[str, list[int], list[bool]]]:
    """Sixty held-out problems in the usual form, or (`first_stage`) with the curriculum's first-stage options
    (`--near`, `--ask-near`, `--small`, `--ask-source`; traced answers are not scored, so `--trace` is left out)."""
    options = (bool(args.near), bool(args.ask_near), bool(args.small), bool(args.ask_source)) if first_stage \
        else (False,) * 4
    return [problem(random.Random(f"held-out:{i}"), args.form, args.gap, args.aliases, 0.0, *options)
            for i in range(60)]


def source_accuracy(model: Transformer, held_out: list[tuple[str, list[int], list[bool]]], seq: int) -> float:
    """Share of the questions for an alias's source (`x:i`, `--ask-source`) whose name the model predicts."""
    right = total = 0
    for (text, _, _), (ids, pred) in zip(held_out, predictions(model, held_out, seq)):
        for m in re.finditer(r"^[a-z]:[a-z]$", text, re.M):
            if m.start() + 2 < len(ids):
                right += int(pred[m.start() + 1] == ids[m.start() + 2])
                total += 1
    return right / total if total else float("nan")


def guessing(held_out: list[tuple[str, list[int], list[bool]]], seq: int) -> tuple[float, float]:
    """The first-digit accuracy of a model that answers with one of the problem's bound numbers drawn at random (of
    names bound to numbers, and of aliases): the chance level for a model that has learned what a value looks like
    but no look-up."""
    right, total = [0.0, 0.0], [0, 0]
    for text, answers, alias in held_out:
        numbers = re.findall(r"^[a-z]=(\d+)$", text, re.M)
        for a, is_alias in zip(answers, alias):
            if a < seq:
                right[is_alias] += sum(v[0] == text[a] for v in numbers) / len(numbers)
                total[is_alias] += 1
    return _shares(right, total)


def trace_chance(spec: str, step: int) -> float:
    """`--trace START:END`: every alias's answer written with its names up to step START, none after END, the
    chance falling linearly between (the written steps dropped as training goes on: stepwise internalization, Deng
    et al. 2024, arXiv 2405.14838). Empty: never written."""
    if not spec:
        return 0.0
    start, end = map(int, spec.split(":"))
    return min(1.0, max(0.0, (end - step) / max(end - start, 1)))


def grow_steps(args) -> list[int]:
    """`--grow`'s steps, in order (empty without it)."""
    return sorted(int(s) for s in args.grow.split(",")) if args.grow else []


def adamw(model: Transformer, lr: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr, betas=(0.9, 0.95), weight_decay=weight_decay)


def sharpen(model: Transformer, gain: float) -> None:
    """`--attn-gain G`: every layer's queries multiplied by G, so its attention logits are G times q.k/sqrt(d) (a
    softmax temperature of 1/G; Hoffmann et al. 2024, arXiv 2310.12956, trace the plateaus of two-step tasks to the
    softmax and shorten them by its temperature). A layer added by growth gets it too (marked, never twice)."""
    for layer in dict.fromkeys(model.layers):
        q_proj = layer.self_attn.q_proj
        if gain != 1.0 and not getattr(q_proj, "sharpened", False):
            q_proj.register_forward_hook(lambda module, inputs, out: out * gain)
            q_proj.sharpened = True


def build(cfg, args) -> Transformer:
    """The model at its first stage: `--layers` layers; fewer by a block per growth step (`--grow`); or, looped
    (`--tie K`), `--layers / K` layers whose stack appears K times in the layer list (the same modules, so the same
    weights, run K times)."""
    if args.tie > 1:
        model = Transformer(cfg.model, n_layers=args.layers // args.tie)
        model.layers = torch.nn.ModuleList(list(model.layers) * args.tie)
        return model
    return Transformer(cfg.model, n_layers=args.layers - args.block * len(grow_steps(args)))


def grow(model: Transformer, opt: torch.optim.AdamW, args) -> torch.optim.AdamW:
    """One growth event: the layer list rebuilt by `--grow-method`'s source map (one block of `--block` layers
    added, copies initialised as their source), and a new AdamW whose state for every parameter is a copy of its
    source's (stackwise's growth.init copy with growth.optimizer_state auto). Returns the new optimizer."""
    source_map = operators.OPERATORS[args.grow_method].source_map(model.depth, args.block)
    old_params = dict(model.named_parameters())
    model.layers = torch.nn.ModuleList(grow_layers(list(model.layers), source_map, "copy", args.init_std,
                                                   args.layers))
    sharpen(model, args.attn_gain)
    new = adamw(model, opt.param_groups[0]["lr"], args.weight_decay)
    transfer_state(OptimizerSet([opt]), old_params, OptimizerSet([new]), model, *parameter_sources(model, source_map),
                   "copy")
    return new


def small_problems(args, now: dict) -> Callable[[], bool]:
    """`stream`'s `small()`: up to step `--small`, whether the next problem is a small one: always at
    `--small-share` 1, else with that chance, drawn from a random generator of its own (so at share 1 the problems
    are those of a run without the option, draw for draw)."""
    rng = random.Random(f"small-share:{args.seed}")
    return lambda: now["step"] <= args.small and (args.small_share >= 1 or rng.random() < args.small_share)


def run(args, canon: str) -> list[tuple[float, float]]:
    cfg = config_mod.load("default", {"model.d_model": args.d_model, "model.n_layers": args.layers,
                                      "model.n_heads": args.heads, "model.vocab_size": 128,
                                      "model.init_std": args.init_std, "model.canon": canon,
                                      "model.canon_kernel": args.canon_kernel, "model.canon_init": args.canon_init,
                                      "growth.method": "none"})  # (the toy grows by --grow, not by the recipe)
    torch.manual_seed(args.seed)
    model = build(cfg, args)
    sharpen(model, args.attn_gain)
    opt = adamw(model, args.lr, args.weight_decay)
    now = {"step": 0}
    data = stream(random.Random(args.seed), args.form, args.batch, args.seq, args.gap, args.aliases,
                  trace=lambda: trace_chance(args.trace, now["step"]), near=lambda: now["step"] <= args.near,
                  ask_near=lambda: now["step"] <= args.ask_near, small=small_problems(args, now),
                  ask_source=lambda: now["step"] <= args.ask_source)
    held_out = held_out_problems(args)
    growth_steps = set(grow_steps(args))
    curriculum = args.near or args.ask_near or args.small or args.ask_source
    first_stage = held_out_problems(args, first_stage=True) if curriculum else []
    scores, start = [], 0
    saved = Path(f"{args.save}.{canon or 'none'}.pt") if args.save else None
    if saved and saved.is_file():  # resume: the same model, optimizer and scores, the stream replayed to its place
        state = torch.load(saved, weights_only=False)
        # (an option newer than the saved run: the run trained with its default)
        if {**settings(build_parser().parse_args([])), **state["args"]} != settings(args):
            sys.exit(f"{saved}: saved with other settings ({state['args']}); use another --save")
        for _ in (s for s in growth_steps if s <= state["step"]):  # the depth it was saved at
            opt = grow(model, opt, args)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        scores, start = state["scores"], state["step"]
        for step in range(1, start + 1):
            now["step"] = step
            next(data)
        print(f"canon {canon or 'none'}: resumed at step {start}", file=sys.stderr, flush=True)
    last = min(args.stop or args.steps, args.steps)  # (--stop ends the run early; the schedule stays on --steps)
    for step in range(start + 1, last + 1):
        now["step"] = step
        warm, decay = min(1.0, step / 100), min(1.0, max(0.1, (args.steps - step) / (0.2 * args.steps)))
        for group in opt.param_groups:
            group["lr"] = args.lr * warm * decay  # warmup, then the peak, then linear decay over the last 20%
        x, digits = next(data)
        losses = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten(), reduction="none")
        loss = losses[digits[:, 1:].flatten()].mean() if args.answer_loss else losses.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if step % args.every == 0:
            scores.append(accuracy(model, held_out, args.seq))
            staged = f"; first-stage form {accuracy(model, first_stage, args.seq)}" if first_stage else ""
            if args.ask_source:
                staged += f"; sources {source_accuracy(model, first_stage, args.seq)}"
            print(f"canon {canon or 'none'} step {step}: {scores[-1]}{staged}", file=sys.stderr, flush=True)
        if step in growth_steps:  # (scored above at the depth it trained at)
            opt = grow(model, opt, args)
            print(f"canon {canon or 'none'} step {step}: grown to {model.depth} layers", file=sys.stderr, flush=True)
        if step % args.every == 0 and saved:
            state = {"args": settings(args), "step": step, "scores": scores, "model": model.state_dict(),
                     "opt": opt.state_dict()}
            torch.save(state, saved.with_suffix(".tmp"))
            saved.with_suffix(".tmp").replace(saved)
    if args.ask_source and start == args.steps:  # (a finished run resumed: its last sources' score again)
        print(f"canon {canon or 'none'} step {start}: sources {source_accuracy(model, first_stage, args.seq)}",
              file=sys.stderr, flush=True)
    if args.attention:
        shares = attention_shares(model, held_out, args.seq)
        keys = list(shares[0])
        print(f"Attention at the answers' `?` (canon {canon or 'none'}, step {last}), mean weight on:\n"
              f"| layer | {' | '.join(keys)} |\n|---:|" + "---:|" * len(keys))
        for i, row in enumerate(shares):
            print(f"| {i} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
    return scores


def settings(args) -> dict:
    """What a saved run must share with the command that resumes it: every option but `--save`, `--attention`,
    `--stop` and `--steps` (the LR decays over the last 20% of the steps, so a run still at its peak LR may be
    lengthened)."""
    return {k: v for k, v in vars(args).items() if k not in ("save", "steps", "stop", "attention")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--form", choices=["short", "quiz"], default="short")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--init-std", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the model's init and the training problems (the held-out problems stay fixed)")
    parser.add_argument("--weight-decay", type=float, default=0.1, help="AdamW's weight decay")
    parser.add_argument("--attn-gain", type=float, default=1.0, metavar="G",
                        help="attention logits multiplied by G (softmax temperature 1/G)")
    parser.add_argument("--canon", default="A", help="the Canon sites of the second model (model.canon)")
    parser.add_argument("--canon-kernel", type=int, default=4, help="tokens a Canon layer mixes (canon_kernel)")
    parser.add_argument("--canon-init", default="zero", choices=["zero", "conv"],
                        help="the Canon layers' init (model.canon_init): zero (the identity) or conv (Conv1d's)")
    parser.add_argument("--gap", type=int, default=0, help="dashes between a short question and its answer")
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--aliases", action="store_true", help="alias-weighted problems; scored apart for aliases")
    parser.add_argument("--trace", default="", metavar="START:END",
                        help="answers to aliases write the names they go through, dropped between steps START-END")
    parser.add_argument("--near", type=int, default=0, metavar="STEP",
                        help="up to this step, each alias is bound right after its source")
    parser.add_argument("--ask-near", type=int, default=0, metavar="STEP",
                        help="up to this step, each alias is asked on the line after its binding")
    parser.add_argument("--small", type=int, default=0, metavar="STEP",
                        help="up to this step, problems bind two or three numbers and one alias")
    parser.add_argument("--small-share", type=float, default=1.0, metavar="P",
                        help="with --small, the share of the problems that are small (the rest the usual ones)")
    parser.add_argument("--ask-source", type=int, default=0, metavar="STEP",
                        help="up to this step, every alias is also asked what it is bound to (x:i, not scored)")
    parser.add_argument("--answer-loss", action="store_true",
                        help="train on the answers' digits only (the loss of every other character dropped)")
    parser.add_argument("--save", default="", metavar="PREFIX",
                        help="save model, optimizer and scores to PREFIX.<canon>.pt at every score; resume from it")
    parser.add_argument("--stop", type=int, default=0, metavar="STEP",
                        help="stop after this step (the schedule still laid over --steps); resume with --save")
    parser.add_argument("--grow", default="", metavar="STEP[,STEP...]",
                        help="start a block per step shallower and grow by a block at each of these steps")
    parser.add_argument("--grow-method", default="midas", choices=sorted(operators.OPERATORS),
                        help="the growth method whose source map each growth step applies")
    parser.add_argument("--block", type=int, default=2, help="layers a growth step adds (growth.block_size)")
    parser.add_argument("--tie", type=int, default=1, metavar="K",
                        help="a looped model: --layers / K layers, their stack run K times (weights shared)")
    parser.add_argument("--attention", action="store_true",
                        help="at the end, where each layer attends when it predicts an answer (short form)")
    parser.add_argument("--canon-only", action="store_true", help="train only the model with Canon layers")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.grow and (not re.fullmatch(r"\d+(,\d+)*", args.grow) or args.tie > 1
                      or args.layers - args.block * len(grow_steps(args)) < 1
                      or operators.OPERATORS[args.grow_method].schedule is not operators.by_blocks):
        parser.error("--grow takes steps (STEP[,STEP...]) of a method that grows by blocks, not with --tie, and "
                     "needs --layers above --block times their number")
    if args.tie < 1 or args.layers % args.tie:
        parser.error(f"--tie {args.tie}: must divide --layers {args.layers}")
    if (args.trace or args.near or args.ask_near or args.small or args.ask_source) and not args.aliases:
        parser.error("--trace, --near, --ask-near, --small and --ask-source shape the alias problems: add --aliases")
    if args.ask_source and args.form != "short":
        parser.error("--ask-source asks in the short form (x:i)")
    if args.trace and (args.form != "short" or not re.fullmatch(r"\d+:\d+", args.trace)):
        parser.error("--trace takes START:END (steps) and the short form")
    torch.set_flush_denormal(True)
    start = time.perf_counter()
    with_canon = run(args, args.canon)
    plain = [(float("nan"),) * 2] * len(with_canon) if args.canon_only else run(args, "")
    what = "first digit right (numbers / aliases)" if args.aliases else "first digit right"
    print(f"| step | {what}, no Canon layers | with Canon {args.canon}, kernel {args.canon_kernel} |\n"
          "|---:|---:|---:|")
    cell = (lambda r: f"{r[0]:.1%} / {r[1]:.1%}") if args.aliases else (lambda r: f"{r[0]:.1%}")
    for i, (a, b) in enumerate(zip(plain, with_canon)):
        print(f"| {(i + 1) * args.every} | {cell(a)} | {cell(b)} |")
    guess = guessing(held_out_problems(args), args.seq)
    print(f"(a bound number drawn at random: {guess[0]:.1%}" + (f" / {guess[1]:.1%}" if args.aliases else "") +
          f"; {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
