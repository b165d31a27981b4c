"""Optimizer construction (AdamW, Adafactor, Muon+AdamW, and SOAP / Shampoo / PSGD-Kron + AdamW) and the global
learning-rate schedule.

AdamW, Adafactor and Muon come from torch.optim; SOAP, Shampoo and PSGD (Kron) from `pytorch-optimizer` (the
optional extra `optim`). Muon and the second-order methods are meant for the hidden 2-D matrices only (their
preconditioners are per matrix dimension: a vocabulary-sized embedding would need a V x V factor); embeddings, the LM
head and norm gains go to AdamW, as Muon's authors use it. Muon runs with `adjust_lr_fn="match_rms_adamw"`, so one
`train.lr` suits both halves; the second-order methods use their own defaults (second_order below) at that LR.
Sophia (Sophia-G, stackwise.sophia) is element-wise like AdamW and takes every parameter, in AdamW's decay groups.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from stackwise import sophia
from stackwise.config import Config


class OptimizerSet:
    """Several torch optimizers stepped as one (Muon for matrices + AdamW for the rest). With Sophia (one optimizer),
    step takes the Hessian estimate on the steps hessian_due() names (the train step computes it)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], sophia_g: bool = False):
        self.optimizers = optimizers
        self.sophia_g = sophia_g

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    def hessian_due(self) -> bool:
        return self.sophia_g and sophia.due(self.optimizers[0])

    def step(self, hessian: list[torch.Tensor] | None = None) -> None:
        if self.sophia_g:
            assert hessian is not None or not self.hessian_due(), "Sophia's Hessian estimate is due at this step"
            self.optimizers[0].step(hessian=hessian)
            return
        assert hessian is None, "only Sophia takes a Hessian estimate"
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert len(state["optimizers"]) == len(self.optimizers), "optimizer layout changed"
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)


def _is_hidden_matrix(name: str, p: nn.Parameter) -> bool:
    """A block's weight matrix (not a Canon layer's per-channel filter, which is no linear map of the hidden state)."""
    return p.ndim == 2 and name.startswith("layers.") and ".canon_" not in name


def _decay_groups(named: list[tuple[str, nn.Parameter]], weight_decay: float,
                  by_blocks: bool = False) -> list[dict[str, Any]]:
    """Decay matrices (and embeddings); not norm gains. With by_blocks, each group is split further into the
    transformer blocks' parameters (tagged "blocks", for a depth-dependent LR) and the rest."""
    groups = [{"params": [p for _, p in named if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0}]
    if by_blocks:
        ids = {id(p) for n, p in named if n.startswith("layers.")}
        groups = [{**g, "params": [p for p in g["params"] if (id(p) in ids) == blocks], "blocks": blocks}
                  for g in groups for blocks in (True, False)]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: Config) -> OptimizerSet:
    o, t = cfg.optim, cfg.train
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # a tied weight appears once
    cuda = next(model.parameters()).is_cuda
    adamw_kwargs = dict(lr=t.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    adamw_kwargs.update({"fused": True} if cuda else {"foreach": True})
    by_blocks = cfg.growth.depth_lr_exponent != 0  # (the default keeps the two groups older checkpoints hold)
    if o.name == "adamw":
        return OptimizerSet([torch.optim.AdamW(_decay_groups(named, t.weight_decay, by_blocks), **adamw_kwargs)])
    if o.name == "sophia":  # element-wise, like AdamW: every parameter, AdamW's decay groups (stackwise.sophia)
        _require_optim_extra(o.name)
        return OptimizerSet([sophia.build(_decay_groups(named, t.weight_decay, by_blocks), t.lr)], sophia_g=True)
    if o.name == "adafactor":
        return OptimizerSet([torch.optim.Adafactor(_decay_groups(named, t.weight_decay, by_blocks), lr=t.lr,
                                                   foreach=True)])
    hidden = [(n, p) for n, p in named if _is_hidden_matrix(n, p)]
    rest = [(n, p) for n, p in named if not _is_hidden_matrix(n, p)]
    if o.name in SECOND_ORDER:
        groups = [{"params": [p for _, p in hidden], "weight_decay": t.weight_decay,
                   **({"blocks": True} if by_blocks else {})}]
        return OptimizerSet([second_order(o.name, groups, t.lr),
                             torch.optim.AdamW(_decay_groups(rest, t.weight_decay, by_blocks), **adamw_kwargs)])
    assert o.name == "muon", o.name
    muon = torch.optim.Muon([{"params": [p for _, p in hidden], **({"blocks": True} if by_blocks else {})}], lr=t.lr,
                            weight_decay=t.weight_decay, momentum=o.muon_momentum, adjust_lr_fn="match_rms_adamw")
    return OptimizerSet([muon, torch.optim.AdamW(_decay_groups(rest, t.weight_decay, by_blocks), **adamw_kwargs)])


SECOND_ORDER = ("soap", "shampoo", "psgd")


def _require_optim_extra(name: str) -> None:
    try:
        import pytorch_optimizer  # noqa: F401
    except ImportError:
        from stackwise.errors import UserError

        raise UserError(f'optim.name {name}: needs the optional extra: pip install -e ".[optim]"') from None


def second_order(name: str, groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    """SOAP (Vyas et al. 2024), Shampoo (Gupta et al. 2018) or PSGD-Kron (Li 2015/2024) from pytorch-optimizer, with
    that package's defaults except what stackwise sets: the LR (the schedule's) and the weight decay (per group)."""
    _require_optim_extra(name)
    import pytorch_optimizer

    cls = {"soap": pytorch_optimizer.SOAP, "shampoo": pytorch_optimizer.Shampoo, "psgd": pytorch_optimizer.Kron}[name]
    return cls(groups, lr=lr)


def lr_at(step: int, cfg: Config, stage_start: int = 0, stage_index: int = 1) -> float:
    """Linear warmup to train.lr, then a decay to lr·lr_min_ratio at the last step; indexed by the global step.
    train.schedule cosine: a cosine from the warmup's end; wsd: the peak LR until the last train.decay_frac of the
    steps (never before the warmup's end), then linear.

    Two growth stabilizers (off by default; docs/growth.md): with growth.rewarmup_steps > 0, a stage that starts at
    `stage_start` > 0 ramps linearly back up to the global schedule's value over that many steps; with
    growth.lr_drop d < 1, the schedule after the k-th growth event (stage k + 1) is multiplied by d^k.
    """
    t = cfg.train
    if step < t.warmup_steps:
        lr = t.lr * (step + 1) / t.warmup_steps
    else:
        floor = t.lr * t.lr_min_ratio
        if t.schedule == "wsd":
            start = max(t.warmup_steps, t.steps - 1 - round(t.decay_frac * t.steps))
            progress = min(1.0, max(0, step - start) / max(1, t.steps - 1 - start))
            lr = t.lr - (t.lr - floor) * progress
        else:
            progress = min(1.0, (step - t.warmup_steps) / max(1, t.steps - 1 - t.warmup_steps))
            lr = floor + (t.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    rewarm = cfg.growth.rewarmup_steps
    if rewarm and stage_start > 0:
        lr *= min(1.0, (step - stage_start + 1) / rewarm)
    return lr * cfg.growth.lr_drop ** (stage_index - 1)


def depth_lr_factor(cfg: Config, depth: int) -> float:
    """The LR multiplier of the transformer blocks' parameters at `depth`, growth.depth_lr_exponent e:
    (model.n_layers / depth)^e. 1 at the target depth, so a fixed-depth baseline never changes; a shallow stage of a
    grown run trains its blocks at the higher LR that depth-wise parameterizations prescribe for a shallower
    network (e = 1/2: Depth-μP's Adam rule η ∝ L^-1/2; e = 1 - α for CompleteP-style α; docs/growth.md)."""
    return (cfg.model.n_layers / depth) ** cfg.growth.depth_lr_exponent


def set_lr(optimizer: OptimizerSet, lr: float, block_lr: float | None = None) -> None:
    """Every group's LR; groups of block parameters (tagged "blocks" when growth.depth_lr_exponent is set) get
    block_lr instead when it is given."""
    for group in optimizer.param_groups:
        group["lr"] = block_lr if block_lr is not None and group.get("blocks") else lr


def _clone_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in state.items()}


def transfer_state(old: OptimizerSet, old_params: dict[str, nn.Parameter], new: OptimizerSet,
                   new_model: nn.Module, source_of: dict[str, str], fresh: set[str], mode: str) -> None:
    """Give the grown model's optimizer the state of the old one, per growth.optimizer_state.

    source_of maps each new parameter name to the old parameter it was copied from; `fresh` names the parameters
    of newly created layers. copy: every parameter gets a copy of its source's state (its own, for kept layers);
    reset-new: only kept parameters do; reset-all: nothing is carried over.
    """
    if mode == "reset-all":
        return
    # state some optimizers keep per group rather than per parameter (SOAP's and Shampoo's step counter): entries
    # the old group gained while stepping, which the new group (built with the same layout) does not have yet
    for old_opt, new_opt in zip(old.optimizers, new.optimizers, strict=True):
        for old_group, new_group in zip(old_opt.param_groups, new_opt.param_groups, strict=True):
            for key, value in old_group.items():
                if key != "params" and key not in new_group:
                    new_group[key] = copy.deepcopy(value)
    old_state = {id(p): s for opt in old.optimizers for p, s in opt.state.items()}
    owner = {id(p): opt for opt in new.optimizers for g in opt.param_groups for p in g["params"]}
    for name, p in new_model.named_parameters():
        if (mode == "reset-new" and name in fresh) or id(p) not in owner:  # (frozen: growth.freeze_old)
            continue
        state = old_state.get(id(old_params[source_of[name]]))
        if state:
            owner[id(p)].state[p] = _clone_state(state)
