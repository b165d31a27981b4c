"""Sophia-G (Liu, Li, Hall, Liang & Ma, "Sophia: A Scalable Stochastic Second-order Optimizer for Language Model
Pre-training", ICLR 2024, arXiv 2305.14342): momentum divided by a moving average of a diagonal Hessian estimate,
clipped per coordinate.

The update is the official Sophia-G's (github.com/Liuhong99/Sophia, the paper's Algorithm 3):

    m ← β1·m + (1 − β1)·g                 h ← β2·h + (1 − β2)·ĝ⊙ĝ   (every k steps)
    θ ← (1 − η·λ)·θ − η·clip(m / (ρ·B·h + ε), 1)

where ĝ is the gradient of the mean loss on labels *sampled from the model's own output distribution* (the
Gauss-Newton-Bartlett estimator: no Hessian-vector product, just one more forward and backward pass every k steps)
and B the tokens in the global batch. stackwise runs the update in pytorch-optimizer's SophiaH with the estimate
given from outside (`step(hessian=...)`, ρ·B folded into it, its clip at 1), so that package's own Hutchinson
estimator, which needs `loss.backward(create_graph=True)`, is never called. The train step (stackwise.train)
computes the estimate through the same micro-batching, DDP and compile wrapping as the loss, on the steps `due`
says. The constants are the official implementation's defaults; like every optimizer, the LR is train.lr.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

RHO = 0.04  # ρ, the official SophiaG's default
BETAS = (0.965, 0.99)  # (β1, β2), the official SophiaG's defaults
EVERY = 10  # k: the Hessian estimate is refreshed every k optimizer steps (the paper's setting)


def build(groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    """pytorch-optimizer's SophiaH as Sophia-G: its clip at 1, the estimate (already scaled by ρ·B) from outside."""
    from pytorch_optimizer import SophiaH

    return SophiaH(groups, lr=lr, betas=BETAS, p=1.0, update_period=EVERY)


def steps_taken(opt: torch.optim.Optimizer) -> int:
    return opt.param_groups[0].get("step", 0)


def due(opt: torch.optim.Optimizer) -> bool:
    """Whether the next step needs a fresh estimate (steps 1, k + 1, 2k + 1, ...: the ones SophiaH refreshes at)."""
    return steps_taken(opt) % EVERY == 0


def sampled_loss(logits: torch.Tensor, seed: int, step: int, first_row: int) -> torch.Tensor:
    """Mean cross-entropy of the logits (B, T, V) against labels drawn from their own softmax. Row b's labels come
    from an RNG of (run seed, optimizer step, b's row in the global batch) alone: a resumed run draws the same labels,
    and so do 1 or N ranks and any number of micro-batches (the estimate is the same, to rounding)."""
    flat = logits.float().reshape(-1, logits.size(-1))
    with torch.no_grad():
        probs = F.softmax(flat, dim=-1).view(*logits.shape[:-1], -1)  # (B, T, V): one row of the batch at a time
        labels = torch.cat([torch.multinomial(row, 1, generator=torch.Generator(device=logits.device).manual_seed(
            (seed * 1_000_003 + step) * 1_000_033 + first_row + b)).squeeze(1) for b, row in enumerate(probs)])
    return F.cross_entropy(flat, labels)


def estimate(opt: torch.optim.Optimizer, tokens: int) -> list[torch.Tensor]:
    """ρ·B·ĝ⊙ĝ from the gradients now in the parameters (those of the sampled loss), one tensor per parameter of
    `opt` in its group order (zeros for a parameter without a gradient)."""
    return [RHO * tokens * p.grad.detach().float().square().to(p.dtype) if p.grad is not None else torch.zeros_like(p)
            for g in opt.param_groups for p in g["params"]]
