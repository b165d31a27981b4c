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


class LanguageModel(Protocol):
    def generate(self, prompt: str, max_new_tokens: int, stop: str) -> str: ...

    def loglik(self, prompt: str, continuations: list[str]) -> list[float]: ...


class StackwiseLM:
    """Greedy generation and continuation log-likelihoods; prompts longer than the context keep their end."""

    def __init__(self, model, tokenizer, context: int):
        self.model, self.tok, self.context = model.eval(), tokenizer, context
        self.device = next(model.parameters()).device
        self.truncated = 0

    def _ids(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def _window(self, ids: list[int], room: int) -> list[int]:
        keep = self.context - room
        if len(ids) > keep:
            self.truncated += 1
            ids = ids[-keep:]
        return ids

    @torch.no_grad()
    def generate(self, prompt: str, max_new_tokens: int, stop: str) -> str:
        ids = self._window(self._ids(prompt), max_new_tokens)
        out: list[int] = []
        for _ in range(max_new_tokens):
            x = torch.tensor([ids + out], device=self.device)
            out.append(int(self.model(x)[0, -1].argmax()))
            text = self.tok.decode(out)
            if stop and stop in text:
                return text.split(stop)[0]
        return self.tok.decode(out)

    @torch.no_grad()
    def loglik(self, prompt: str, continuations: list[str]) -> list[float]:
        prompt_ids = self._ids(prompt)
        scores = []
        for cont in continuations:
            cont_ids = self._ids(cont)
            ids = self._window(prompt_ids, len(cont_ids)) + cont_ids
            x = torch.tensor([ids[:-1]], device=self.device)
            logp = F.log_softmax(self.model(x)[0].float(), dim=-1)
            targets = torch.tensor(ids[1:], device=self.device)[-len(cont_ids):]
            scores.append(float(logp[-len(cont_ids):].gather(1, targets[:, None]).sum()))
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
        generated = lm.generate(prompt, max_new_tokens=12, stop=task.stop)
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
