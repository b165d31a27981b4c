"""Scoring reasoning primitives on any language model: greedy exact match and log-likelihood multiple choice.

A model is anything with `generate(prompt, max_new_tokens, stop) -> str` and
`loglik(prompt, continuations) -> list[float]`; `StackwiseLM` adapts our Transformer and tokenizer. Accuracies come
with a 95% Wilson interval.
"""

from __future__ import annotations

import math
import random
from typing import Protocol

import torch
import torch.nn.functional as F

from stackwise.evals.primitives import TASKS, Task, kshot
from stackwise.model import KVCache

MAX_NEW_TOKENS = 12  # greedy generation's budget per query


class LanguageModel(Protocol):
    def generate(self, prompt: str, max_new_tokens: int, stop: str) -> str: ...

    def loglik(self, prompt: str, continuations: list[str]) -> list[float]: ...


class StackwiseLM:
    """Greedy generation and continuation log-likelihoods; prompts longer than the context keep their end.

    The prompt runs once into a KV cache (kept for the next call, so that generation and multiple choice on the same
    prompt share it): generation then decodes one token per step, and the candidates of a multiple choice are scored
    together in one batch that continues the shared prompt. A prompt is cut to leave room for `answer_room` tokens
    (or a longer answer), the same room for both, so that they share the prefill. The kept prefill assumes the
    model's weights do not change while this object is in use (make a new one after a training step)."""

    def __init__(self, model, tokenizer, context: int, answer_room: int = MAX_NEW_TOKENS):
        self.model, self.tok, self.context, self.answer_room = model.eval(), tokenizer, context, answer_room
        self.device = next(model.parameters()).device
        self.truncated = 0  # prompts cut to fit (generation and multiple choice on one prompt count it once)
        self._last_cut: list[int] | None = None
        self._last: tuple[list[int], torch.Tensor, KVCache] | None = None  # the last prefill: ids, logits, cache

    def _ids(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def _window(self, ids: list[int], room: int) -> list[int]:
        keep = self.context - max(room, self.answer_room)
        if len(ids) > keep:
            if ids != self._last_cut:
                self.truncated += 1
                self._last_cut = ids
            ids = ids[-keep:]
        return ids

    def _prefill(self, ids: list[int]) -> tuple[torch.Tensor, KVCache]:
        """The next-token logits (V,) after `ids` and the cache holding them."""
        assert ids, "an empty prompt has no next-token distribution"
        if self._last is not None and self._last[0] == ids:
            return self._last[1], self._last[2].copy()  # updates replace entries: the saved ones stay
        cache = KVCache()
        logits = self.model.lm_head(self.model.hidden(torch.tensor([ids], device=self.device), cache)[0, -1])
        self._last = (ids, logits, cache.copy())
        return logits, cache

    @torch.no_grad()
    def generate(self, prompt: str, max_new_tokens: int, stop: str) -> str:
        logits, cache = self._prefill(self._window(self._ids(prompt), max_new_tokens))
        out: list[int] = []
        while True:
            out.append(int(logits.argmax()))
            text = self.tok.decode(out)
            if stop and stop in text:
                return text.split(stop)[0]
            if len(out) == max_new_tokens:
                return text
            logits = self.model(torch.tensor([out[-1:]], device=self.device), cache=cache)[0, -1]

    @torch.no_grad()
    def loglik(self, prompt: str, continuations: list[str]) -> list[float]:
        """Sum of log p(continuation tokens | prompt) per continuation; the prompt is cut to leave room for the
        longest one."""
        conts = [self._ids(c) for c in continuations]
        assert all(conts), "an empty continuation has no likelihood"
        longest = max(len(c) for c in conts)
        logits, cache = self._prefill(self._window(self._ids(prompt), longest))
        first = F.log_softmax(logits.float(), dim=-1)
        scores = [float(first[c[0]]) for c in conts]
        if longest > 1:  # the rest of each candidate, all candidates in one batch (right padding is harmless)
            x = torch.zeros(len(conts), longest - 1, dtype=torch.long)
            for i, c in enumerate(conts):
                x[i, :len(c) - 1] = torch.tensor(c[:-1])
            logp = F.log_softmax(self.model(x.to(self.device), cache=cache.expand(len(conts))).float(), dim=-1)
            for i, c in enumerate(conts):
                if len(c) > 1:
                    targets = torch.tensor(c[1:], device=self.device)
                    scores[i] += float(logp[i, :len(c) - 1].gather(1, targets[:, None]).sum())
        return scores


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _summary(correct: int, n: int, chance: float) -> dict:
    lo, hi = wilson(correct, n)
    return {"accuracy": correct / n if n else 0.0, "n": n, "correct": correct, "chance": chance,
            "ci95": [lo, hi]}


def is_correct(task: Task, generated: str, answer: str, expression: str | None) -> bool:
    got = generated.strip()
    if task.score == "expression":
        return got.split("=")[0].strip() == expression
    return got == answer.strip()


def evaluate_task(lm: LanguageModel, task: Task, n: int, shots: int, seed: int) -> dict:
    rng = random.Random(f"{seed}:{task.name}")
    gen_correct = mc_correct = mc_n = 0
    for _ in range(n):
        prompt, ex = kshot(task, rng, shots)
        generated = lm.generate(prompt, max_new_tokens=MAX_NEW_TOKENS, stop=task.stop)
        gen_correct += is_correct(task, generated, ex.answer, ex.expression)
        if ex.candidates:
            scores = lm.loglik(prompt, list(ex.candidates))
            mc_n += 1
            mc_correct += ex.candidates[max(range(len(scores)), key=scores.__getitem__)] == ex.answer
    out = {"generation": _summary(gen_correct, n, 0.0)}
    if mc_n:
        out["multiple_choice"] = _summary(mc_correct, mc_n, task.chance)
    return out


def evaluate(lm: LanguageModel, tasks: list[str] | None = None, n: int = 200, shots: int = 5,
             seed: int = 0) -> dict[str, dict]:
    return {name: evaluate_task(lm, TASKS[name], n, shots, seed) for name in (tasks or list(TASKS))}
