"""Depth analyses of a trained model: looping a block at inference, layer similarity, and how much of its depth a
model uses. Pure functions of a model (and validation batches); `stackwise analyze` runs them on runs and comparisons.

- **Looping** (`looped`): layers START..END-1 run K times in a row at inference, sharing weights (Kapl et al. 2026,
  "From Growing to Looping", report that grown models gain from looping their middle block). K = 1 is the model
  itself (tested: identical logits).
- **Similarity** (`weight_similarity`, `update_similarity`): cosine similarity between every pair of layers, of
  their weights (all of a block's matrices flattened into one vector) and of their residual updates
  (x_{i+1} - x_i at each token, cosine per token, averaged): MIDAS's evidence of a kinship with looped models is
  that stacked models' middle layers are alike (Saunshi et al. 2024).
- **Depth use** (`skip_losses`, `logit_lens`): the validation-loss increase when each layer is skipped (the residual
  stream passes it unchanged), and the logit lens (the final norm and LM head applied to the residual stream after
  each layer; nostalgebraist 2020): its loss per layer and an early-exit depth score, the mean over tokens of the
  first layer after which the lens's top-1 prediction equals the model's final one and stays so, divided by the
  depth (1.0: every token needs the whole stack). Kapl et al. 2025 (arXiv 2512.08819) study depth use with skip
  and early-exit measures; these are our definitions, stated here, not a copy of theirs.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from stackwise.errors import UserError
from stackwise.model import Transformer, rope_cache


def default_loop(depth: int, block: int) -> tuple[int, int]:
    """The middle block: `block` layers (growth.block_size) centred in the stack, as MIDAS duplicates it."""
    block = min(block, depth)
    start = (depth - block) // 2
    return start, start + block


def parse_loop(text: str, depth: int | None = None, with_k: bool = True) -> tuple[int, ...]:
    """START:END[:K] as ints, checked against the depth when known; a one-line UserError otherwise."""
    form = "START:END:K" if with_k else "START:END"
    try:
        values = tuple(int(v) for v in text.split(":"))
    except ValueError:
        values = ()
    if len(values) != (3 if with_k else 2) or not 0 <= values[0] < values[1] or (with_k and values[2] < 1) \
            or (depth is not None and values[1] > depth):
        raise UserError(f"--loop: '{text}' is not {form} with 0 <= START < END <= depth"
                        + (f" ({depth})" if depth is not None else "") + (" and K >= 1" if with_k else ""))
    return values


def looped_layers(layers: list[nn.Module], start: int, end: int, k: int) -> list[nn.Module]:
    """layers[:start] + layers[start:end] repeated k times + layers[end:] (the same modules: shared weights)."""
    assert 0 <= start < end <= len(layers) and k >= 1, (start, end, k, len(layers))
    return [*layers[:start], *layers[start:end] * k, *layers[end:]]


def looped(model: Transformer, start: int, end: int, k: int) -> Transformer:
    """A view of `model` that runs layers START..END-1 k times (weights shared with `model`, nothing copied)."""
    view = copy.copy(model)  # a shallow copy: same parameters, own module dict
    view._modules = dict(model._modules)
    view._modules["layers"] = nn.ModuleList(looped_layers(list(model.layers), start, end, k))
    return view


@torch.no_grad()
def residual_stream(model: Transformer, idx: torch.Tensor, skip: int | None = None) -> list[torch.Tensor]:
    """The residual stream before the first layer and after each layer (depth + 1 tensors (B, T, D)); layer `skip`
    is passed through unchanged when given."""
    cos, sin = rope_cache(idx.shape[1], model.cfg.d_model // model.cfg.n_heads, model.cfg.rope_theta, idx.device)
    x = model.embed_tokens(idx)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    stream = [x]
    for i, block in enumerate(model.layers):
        x = x if i == skip else block(x, cos, sin)
        stream.append(x)
    return stream


def _loss(model: Transformer, x: torch.Tensor, targets: torch.Tensor) -> float:
    logits = model.lm_head(model.norm(x)).float()
    return float(F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1)))


@torch.no_grad()
def val_loss(model: Transformer, batches: list[tuple[torch.Tensor, torch.Tensor]], skip: int | None = None) -> float:
    """Mean loss over the batches (layer `skip` passed through unchanged when given)."""
    return sum(_loss(model, residual_stream(model, x, skip)[-1], y) for x, y in batches) / len(batches)


def skip_losses(model: Transformer, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """{"loss": the model's validation loss, "increase": [loss with layer i skipped - loss, for each i]}."""
    base = val_loss(model, batches)
    return {"loss": base, "increase": [val_loss(model, batches, i) - base for i in range(model.depth)]}


@torch.no_grad()
def logit_lens(model: Transformer, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """{"loss": [lens loss after layer 0..depth] (entry 0: the embeddings alone), "depth_score": mean over tokens of
    the first layer from which the lens's top-1 equals the final top-1 for good, divided by the depth}."""
    losses = [0.0] * (model.depth + 1)
    exits, tokens = 0.0, 0
    for x, y in batches:
        stream = residual_stream(model, x)
        top = torch.stack([model.lm_head(model.norm(h)).argmax(-1) for h in stream])  # (L+1, B, T)
        for i, h in enumerate(stream):
            losses[i] += _loss(model, h, y) / len(batches)
        agrees = top == top[-1]  # (L+1, B, T); the last layer always agrees
        # first layer from which every later layer agrees: L+1 minus the length of the agreeing suffix
        suffix = torch.flip(torch.cumprod(torch.flip(agrees, [0]).int(), 0), [0]).sum(0)  # (B, T)
        exits += float((model.depth + 1 - suffix).sum())
        tokens += suffix.numel()
    return {"loss": losses, "depth_score": exits / tokens / model.depth}


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten().float(), b.flatten().float(), dim=0))


@torch.no_grad()
def weight_similarity(model: Transformer) -> list[list[float]]:
    """Cosine similarity of every pair of layers' weights (each block's matrices flattened into one vector)."""
    vecs = [torch.cat([p.flatten() for n, p in block.named_parameters() if p.ndim == 2]) for block in model.layers]
    return [[_cos(a, b) for b in vecs] for a in vecs]


@torch.no_grad()
def update_similarity(model: Transformer, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[list[float]]:
    """Cosine similarity of every pair of layers' residual updates x_{i+1} - x_i, per token, averaged."""
    L = model.depth
    total = torch.zeros(L, L)
    for x, _ in batches:
        stream = residual_stream(model, x)
        updates = torch.stack([F.normalize((b - a).float(), dim=-1) for a, b in zip(stream, stream[1:])])
        total += torch.einsum("ibtd,jbtd->ij", updates, updates) / updates[0, ..., 0].numel()
    return (total / len(batches)).tolist()
