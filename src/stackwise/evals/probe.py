"""The fine-tuning probe (Saunshi et al. 2024, §5): how quickly a pretrained model learns variable assignment.

Protocol: 64 training examples (32 depth-1 + 32 depth-2, code wording, 0-shot), full-batch fine-tuning at a constant
learning rate with the loss on the answer tokens only; accuracy on 1000 held-out examples (500 + 500), by
log-likelihood choice among the five candidate values (chance 20%), averaged over the evaluations in a window of late
steps; repeated for several data seeds, each from a fresh copy of the pretrained weights. Steps, LR and an optional
mini-batch size are flags: small models need other values than the paper's, and full-batch steps on hundreds of
examples are what makes the probe slow on a CPU.

Only the answer positions go through the LM head (in the loss and in scoring), and a query whose candidates are
single tokens (most: the values are small numbers) is scored from one forward pass over its prompt.
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
    batch_size: int | None = None  # training examples per step (None: all of them, the paper's full batch)


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
    """Mean cross-entropy over answer tokens only (only those positions go through the LM head)."""
    keep = y != -100
    logits = model.lm_head(model.hidden(x)[keep])  # (answer tokens, V)
    return F.cross_entropy(logits.float(), y[keep])


def _answer_logp(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sequence, the summed log-probability of its answer tokens (targets other than -100)."""
    keep = y != -100
    logp = F.log_softmax(model.lm_head(model.hidden(x)[keep]).float(), dim=-1)
    picked = logp.gather(1, y[keep][:, None])[:, 0]
    rows = keep.nonzero()[:, 0]
    return torch.zeros(x.shape[0], device=x.device).index_add_(0, rows, picked)


@torch.no_grad()
def candidate_scores(model, tok, examples: list[Example], pad: int, batch: int) -> list[list[float]]:
    """log p(candidate | prompt) for every candidate of every example. An example whose candidates are all single
    tokens is scored from its prompt's last position (one sequence instead of one per candidate); the others run
    prompt + candidate per candidate."""
    device = next(model.parameters()).device
    scores: list[list[float]] = [[0.0] * len(ex.candidates) for ex in examples]
    single: list[tuple[int, list[int], list[int]]] = []  # (example, prompt ids, candidate ids)
    full: list[tuple[int, int, tuple[list[int], int]]] = []  # (example, candidate, (ids, prompt length))
    for i, ex in enumerate(examples):
        prompt = tok.encode(ex.prompt, add_special_tokens=False).ids
        cands = [tok.encode(c, add_special_tokens=False).ids for c in ex.candidates]
        if all(len(c) == 1 for c in cands):
            single.append((i, prompt, [c[0] for c in cands]))
        else:
            full += [(i, j, (prompt + c, len(prompt))) for j, c in enumerate(cands)]
    for start in range(0, len(single), batch):
        chunk = single[start:start + batch]
        x = torch.full((len(chunk), max(len(p) for _, p, _ in chunk)), pad, dtype=torch.long)
        for r, (_, prompt, _) in enumerate(chunk):
            x[r, :len(prompt)] = torch.tensor(prompt)
        h = model.hidden(x.to(device))
        last = h[torch.arange(len(chunk)), torch.tensor([len(p) - 1 for _, p, _ in chunk])]  # right padding
        logp = F.log_softmax(model.lm_head(last).float(), dim=-1)
        for r, (i, _, cand) in enumerate(chunk):
            scores[i] = logp[r, cand].tolist()
    for start in range(0, len(full), batch):
        chunk = full[start:start + batch]
        x, y = _batch([seq for _, _, seq in chunk], pad, device)
        for (i, j, _), s in zip(chunk, _answer_logp(model, x, y).tolist()):
            scores[i][j] = s
    return scores


def choice_accuracy(model, tok, examples: list[Example], pad: int, batch: int) -> float:
    """Fraction of examples whose answer has the highest log-likelihood among their candidates."""
    model.eval()
    scores = candidate_scores(model, tok, examples, pad, batch)
    model.train()
    right = sum(ex.candidates[max(range(len(s)), key=s.__getitem__)] == ex.answer for ex, s in zip(examples, scores))
    return right / len(examples)


def _minibatches(n: int, size: int, seed: int):
    """Index lists of `size` examples: seeded shuffles of all n, epoch after epoch (one batch of all n when size
    >= n: full-batch training)."""
    if size >= n:
        while True:
            yield list(range(n))
    rng = random.Random(f"probe-batches:{seed}")
    order: list[int] = []
    while True:
        while len(order) < size:
            epoch = list(range(n))
            rng.shuffle(epoch)
            order += epoch
        yield order[:size]
        order = order[size:]


def run_probe(model, tok, pad: int, cfg: ProbeConfig, log=print) -> dict:
    device = next(model.parameters()).device
    per_seed = []
    for seed in range(cfg.seeds):
        train, test = probe_examples(seed, cfg.n_train, cfg.n_test)
        tuned = copy.deepcopy(model).train()
        opt = torch.optim.AdamW(tuned.parameters(), lr=cfg.lr, weight_decay=0.0)
        seqs = [_encode(tok, e.prompt, e.answer) for e in train]
        batches = _minibatches(len(seqs), cfg.batch_size or len(seqs), seed)
        curve = [{"step": 0, "accuracy": choice_accuracy(tuned, tok, test, pad, cfg.batch_eval)}]
        for step in range(1, cfg.steps + 1):
            x, y = _batch([seqs[i] for i in next(batches)], pad, device)
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
