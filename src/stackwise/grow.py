"""A growth event applied to a model: its layer list rebuilt from a source map (copy, random or identity init) and its
optimizer rebuilt with the state carried over (growth.optimizer_state). The plan of when and how to grow is
growth.py's; parallel.py unwraps before and wraps after.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from stackwise import config as config_mod
from stackwise import growth, parallel
from stackwise.config import Config
from stackwise.model import OUTPUT_PROJECTIONS, Transformer, init_block
from stackwise.optim import OptimizerSet, build_optimizer, transfer_state


def grow_layers(layers: list[nn.Module], source_map: list[int], init: str, std: float,
                n_layers: int, noise: float = 0.0) -> list[nn.Module]:
    """The grown list: first occurrences keep the old layer objects, copies are deep copies, then `init` applies.

    init: copy (as published) | random (fresh init, same positions) | identity (copy with zeroed output
    projections: the grown model computes the same function). With noise > 0, every weight matrix of a copied
    layer gets Gaussian noise of std noise × that matrix's std (symmetry breaking between a layer and its copy, as
    Net2Net adds noise to its function-preserving copies); under identity the zeroed output projections stay zero, so
    the function is still preserved. Every layer's `layer_idx` is renumbered.
    """
    assert all(0 <= s < len(layers) for s in source_map)
    copies = set(growth.new_positions(source_map))
    out = [copy.deepcopy(layers[s]) if i in copies else layers[s] for i, s in enumerate(source_map)]
    for i in copies:
        if init == "random":
            init_block(out[i], std, n_layers)
        elif init == "identity":
            for name, p in out[i].named_parameters():
                if any(name.startswith(o) for o in OUTPUT_PROJECTIONS):
                    nn.init.zeros_(p)
        else:
            assert init == "copy", init
        if noise and init != "random":
            with torch.no_grad():
                for name, p in out[i].named_parameters():
                    zeroed = init == "identity" and any(name.startswith(o) for o in OUTPUT_PROJECTIONS)
                    if p.ndim == 2 and not zeroed:
                        p.add_(torch.randn_like(p) * (noise * p.std()))
    for i, layer in enumerate(out):
        layer.layer_idx = i
    return out


def freeze(model: Transformer, frozen_layers: set[int]) -> None:
    """growth.freeze_old (LLaMA Pro): the layers at these positions, the embeddings, the final norm and the head
    stop training; every other layer trains. (The optimizer is built after this, over the trainable parameters.)"""
    for i, layer in enumerate(model.layers):
        layer.requires_grad_(i not in frozen_layers)
    for module in (model.embed_tokens, model.norm, model.lm_head):
        module.requires_grad_(False)


def parameter_sources(model: nn.Module, source_map: list[int]) -> tuple[dict[str, str], set[str]]:
    """For a model just grown by `source_map`: each parameter's name -> the name of the old parameter it starts from,
    and the names of the parameters of newly created layers (what `transfer_state` takes)."""
    fresh_layers = set(growth.new_positions(source_map))
    source_of, fresh = {}, set()
    for name, _ in model.named_parameters():
        if name.startswith("layers."):
            _, i, rest = name.split(".", 2)
            source_of[name] = f"layers.{source_map[int(i)]}.{rest}"
            if int(i) in fresh_layers:
                fresh.add(name)
        else:
            source_of[name] = name
    return source_of, fresh


def grow(model: Transformer, optimizer: OptimizerSet, stage: growth.Stage, cfg: Config,
         frozen_layers: set[int] | None = None) -> OptimizerSet:
    """One growth event on a plain model: replace the layer list per the stage's source map, rebuild the optimizer
    with state transferred (growth.optimizer_state). The caller unwraps before (parallel.unwrap_for_growth) and
    wraps again after. Returns the new optimizer."""
    src = list(stage.source_layers)
    assert len(src) == stage.depth and max(src) < model.depth
    parallel.unwrap(model)
    old_params = dict(model.named_parameters())
    device = next(model.parameters()).device
    model.layers = torch.nn.ModuleList(
        grow_layers(list(model.layers), src, cfg.growth.init, cfg.model.init_std, cfg.model.n_layers,
                    cfg.growth.copy_noise))
    model.to(device)
    source_of, fresh = parameter_sources(model, src)
    if frozen_layers is not None:
        freeze(model, frozen_layers)
    new_optimizer = build_optimizer(model, cfg)
    transfer_state(optimizer, old_params, new_optimizer, model, source_of, fresh,
                   config_mod.optimizer_state_policy(cfg.growth))
    return new_optimizer
