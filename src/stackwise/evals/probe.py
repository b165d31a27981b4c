"""The fine-tuning probe (Saunshi et al. 2024, §5): how quickly a pretrained model learns variable assignment.

Protocol: 64 training examples (32 depth-1 + 32 depth-2, code wording, 0-shot), full-batch fine-tuning at a constant
learning rate with the loss on the answer tokens only; accuracy on 1000 held-out examples (500 + 500), by
log-likelihood choice among the five candidate values (chance 20%), averaged over the evaluations in a window of late
steps; repeated for several data seeds, each from a fresh copy of the pretrained weights. Steps and LR are flags:
small models need other values than the paper's.
"""

from __future__ import annotations

import copy
import random
import statistics
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stackwise.evals.primitives import Example, variable_assignment


@dataclass
class ProbeConfig:
    steps: int = 200
    lr: float = 1e-4
    seeds: int = 3
    eval_every: int = 20
    window: int = 5  # evaluations averaged at the end
    n_train: int = 64
    n_test: int = 1000
    batch_eval: int = 256  # sequences per forward pass when scoring


def probe_examples(seed: int, n_train: int, n_test: int) -> tuple[list[Example], list[Example]]:
    """Half depth-1, half depth-2, code wording, 0-shot; the test set never repeats a training prompt."""
    rng = random.Random(f"probe:{seed}")

    def draw(n: int, avoid: set[str]) -> list[Example]:
        out: list[Example] = []
        while len(out) < n:
            ex = variable_assignment(rng, 1 + len(out) % 2, "code")
            if ex.prompt not in avoid:
                out.append(ex)
                avoid.add(ex.prompt)
        return out

    seen: set[str] = set()
    train = draw(n_train, seen)
    return train, draw(n_test, seen)


def _encode(tok, prompt: str, answer: str) -> tuple[list[int], int]:
    p = tok.encode(prompt, add_special_tokens=False).ids
    a = tok.encode(answer, add_special_tokens=False).ids
    return p + a, len(p)


def _batch(seqs: list[tuple[list[int], int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (B, T) and targets (B, T) with -100 everywhere but the answer tokens (right padding is harmless:
    attention is causal)."""
    T = max(len(ids) for ids, _ in seqs) - 1
    x = torch.full((len(seqs), T), pad, dtype=torch.long)
    y = torch.full((len(seqs), T), -100, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(seqs):
        x[i, :len(ids) - 1] = torch.tensor(ids[:-1])
        y[i, n_prompt - 1:len(ids) - 1] = torch.tensor(ids[n_prompt:])
    return x.to(device), y.to(device)


def answer_loss(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over answer tokens only."""
    logits = model(x)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-100)


@torch.no_grad()
def choice_accuracy(model, tok, examples: list[Example], pad: int, batch: int) -> float:
    """Fraction of examples whose answer has the highest log-likelihood among their candidates."""
    model.eval()
    seqs, owner = [], []
    for i, ex in enumerate(examples):
        for cand in ex.candidates:
            seqs.append(_encode(tok, ex.prompt, cand))
            owner.append((i, cand == ex.answer))
    scores = []
    device = next(model.parameters()).device
    for start in range(0, len(seqs), batch):
        x, y = _batch(seqs[start:start + batch], pad, device)
        logp = F.log_softmax(model(x).float(), dim=-1)
        mask = y != -100
        picked = logp.gather(2, y.clamp(min=0)[..., None])[..., 0] * mask
        scores += picked.sum(1).tolist()
    best: dict[int, tuple[float, bool]] = {}
    for (i, right), s in zip(owner, scores):
        if i not in best or s > best[i][0]:
            best[i] = (s, right)
    model.train()
    return sum(right for _, right in best.values()) / len(examples)


def run_probe(model, tok, pad: int, cfg: ProbeConfig, log=print) -> dict:
    device = next(model.parameters()).device
    per_seed = []
    for seed in range(cfg.seeds):
        train, test = probe_examples(seed, cfg.n_train, cfg.n_test)
        tuned = copy.deepcopy(model).train()
        opt = torch.optim.AdamW(tuned.parameters(), lr=cfg.lr, weight_decay=0.0)
        x, y = _batch([_encode(tok, e.prompt, e.answer) for e in train], pad, device)
        curve = [{"step": 0, "accuracy": choice_accuracy(tuned, tok, test, pad, cfg.batch_eval)}]
        for step in range(1, cfg.steps + 1):
            loss = answer_loss(tuned, x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                acc = choice_accuracy(tuned, tok, test, pad, cfg.batch_eval)
                train_loss = float(loss.detach())
                curve.append({"step": step, "accuracy": acc, "train_loss": train_loss})
                log(f"probe seed {seed} step {step}: train loss {train_loss:.4f}, held-out accuracy {acc:.1%}")
        late = [c["accuracy"] for c in curve[1:]][-cfg.window:]
        per_seed.append({"seed": seed, "curve": curve, "late_accuracy": statistics.fmean(late)})
    accs = [s["late_accuracy"] for s in per_seed]
    return {"config": cfg.__dict__, "chance": 0.2, "per_seed": per_seed,
            "late_accuracy": {"mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                              "n": len(accs)}}
