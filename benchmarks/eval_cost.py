"""Seconds to score reasoning primitives with stackwise's scorer (prompt prefilled once into a KV cache, the
candidates of a multiple choice in one batch, generation decoded token by token) against the plain way (one full
forward pass per candidate and per generated token), timed alternately in one process on a trained run, and a
check that both choose the same answers. The same for the fine-tuning probe's held-out scoring (stackwise: one
pass over the prompt when the candidates are single tokens, the LM head at answer positions only; plain: one
sequence per candidate with every position's logits).

    python benchmarks/eval_cost.py RUN_DIR --tasks var1_code,copy_random,arithmetic --n 20 --probe-n 200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from stackwise.evals import probe
from stackwise.evals.runner import load_tokenizer, models
from stackwise.evals.scoring import StackwiseLM, evaluate


class PlainLM(StackwiseLM):
    """The reference: every candidate and every generated token recomputes the whole prompt."""

    @torch.no_grad()
    def generate(self, prompt: str, max_new_tokens: int, stop: str) -> str:
        ids = self._window(self._ids(prompt), max_new_tokens)
        out: list[int] = []
        for _ in range(max_new_tokens):
            out.append(int(self.model(torch.tensor([ids + out]))[0, -1].argmax()))
            text = self.tok.decode(out)
            if stop and stop in text:
                return text.split(stop)[0]
        return self.tok.decode(out)

    @torch.no_grad()
    def loglik(self, prompt: str, continuations: list[str]) -> list[float]:
        conts = [self._ids(c) for c in continuations]
        prompt_ids = self._window(self._ids(prompt), max(len(c) for c in conts))
        scores = []
        for cont in conts:
            ids = prompt_ids + cont
            logp = F.log_softmax(self.model(torch.tensor([ids[:-1]]))[0].float(), dim=-1)
            scores.append(float(logp[-len(cont):].gather(1, torch.tensor(cont)[:, None]).sum()))
        return scores


@torch.no_grad()
def plain_probe_scores(model, tok, examples, pad: int, batch: int) -> list[list[float]]:
    """The reference for the probe: prompt + candidate per candidate, log-softmax over every position."""
    seqs = [probe._encode(tok, ex.prompt, c) for ex in examples for c in ex.candidates]
    flat: list[float] = []
    for start in range(0, len(seqs), batch):
        x, y = probe._batch(seqs[start:start + batch], pad, "cpu")
        logp = F.log_softmax(model(x).float(), dim=-1)
        flat += (logp.gather(2, y.clamp(min=0)[..., None])[..., 0] * (y != -100)).sum(1).tolist()
    out, i = [], 0
    for ex in examples:
        out.append(flat[i:i + len(ex.candidates)])
        i += len(ex.candidates)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--tasks", default="var1_code,copy_random,arithmetic")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--probe-n", type=int, default=200, help="held-out probe queries scored (0: skip)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    import yaml

    from stackwise import config as config_mod
    cfg = config_mod.from_dict(yaml.safe_load((args.run / "config.yaml").read_text()))
    tok = load_tokenizer(args.run / "tokenizer.json")
    _, _, model = next(models(args.run, "final"))
    tasks = args.tasks.split(",")
    seconds: dict[str, list[float]] = {"cached": [], "plain": []}
    results = {}
    for _ in range(args.rounds):
        for name, cls in (("plain", PlainLM), ("cached", StackwiseLM)):
            start = time.perf_counter()
            results[name] = evaluate(cls(model, tok, context=cfg.train.seq_len), tasks, n=args.n)
            seconds[name].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in seconds.items()}
    print(f"{args.run}: {len(tasks)} tasks × {args.n} queries, {torch.get_num_threads()} threads, best of "
          f"{args.rounds} alternating rounds")
    print(f"  plain {best['plain']:.1f} s, cached {best['cached']:.1f} s: {best['plain'] / best['cached']:.1f}× faster")
    for task in tasks:
        a, b = results["plain"][task], results["cached"][task]
        same = a == b
        print(f"  {task}: {'same scores' if same else f'DIFFERENT: plain {a} cached {b}'}")
    if args.probe_n:
        _, test = probe.probe_examples(0, 0, args.probe_n)
        timed: dict[str, list[float]] = {"plain": [], "stackwise": []}
        for _ in range(args.rounds):
            for name, fn in (("plain", plain_probe_scores), ("stackwise", probe.candidate_scores)):
                start = time.perf_counter()
                scores = fn(model.eval(), tok, test, 0, 256)
                timed[name].append(time.perf_counter() - start)
                results[name] = scores
        gap = max(abs(a - b) for ra, rb in zip(results["plain"], results["stackwise"]) for a, b in zip(ra, rb))
        best = {k: min(v) for k, v in timed.items()}
        print(f"probe scoring, {args.probe_n} held-out queries × 5 candidates: plain {best['plain']:.1f} s, "
              f"stackwise {best['stackwise']:.1f} s: {best['plain'] / best['stackwise']:.1f}× faster; largest "
              f"score difference {gap:.1e}")


if __name__ == "__main__":
    main()
