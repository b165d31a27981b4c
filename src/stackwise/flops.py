"""Training FLOPs counted from the model's shape, as a function of the current depth.

Per token, one training step (forward + backward = 3 × forward) costs

    6 · (depth · P_layer + P_head)  +  12 · depth · T · D

where P_layer is the number of matmul weights in one block (q, k, v, o projections and the three SwiGLU matrices),
P_head = D · V is the LM head, and the last term is attention's QKᵀ and AV products (2 · 2 · T · D per token and
layer, forward; counted over the full T×T square as in the PaLM / Chinchilla convention, without halving for the
causal mask). Embedding lookups and norms are not counted. Depth is an argument because a growing model changes it
between stages; the trainer sums this per step with the depth that step really had.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (no import at run time: the config validates with this module, without torch)
    from stackwise.config import ModelConfig


def ffn_dim(cfg: ModelConfig) -> int:
    """Llama's SwiGLU width: 8/3·d_model rounded up to a multiple of 64, unless set."""
    if cfg.d_ff is not None:
        return cfg.d_ff
    return 64 * math.ceil(8 * cfg.d_model / 3 / 64)


def layer_matmul_params(cfg: ModelConfig) -> int:
    d = cfg.d_model
    kv_dim = (cfg.n_kv_heads or cfg.n_heads) * (d // cfg.n_heads)
    attention = d * d + 2 * d * kv_dim + d * d  # q, k, v, o
    mlp = 3 * d * ffn_dim(cfg)  # gate, up, down
    return attention + mlp


def parameter_count(cfg: ModelConfig, depth: int) -> int:
    """Parameters of a model of `cfg`'s width at `depth` layers (embeddings, blocks with their norms, final norm,
    LM head when untied): what count_parameters(model) gives, without building the model."""
    d = cfg.d_model
    embeddings = cfg.vocab_size * d * (1 if cfg.tie_embeddings else 2)
    return embeddings + depth * (layer_matmul_params(cfg) + 2 * d + canon_params(cfg)) + d


def canon_params(cfg: ModelConfig) -> int:
    """A block's Canon-layer weights (model.canon): one filter of canon_kernel taps per channel and site (A and C:
    d_model channels; B: the query, key and value projections'; D: the gate and up projections')."""
    d = cfg.d_model
    channels = {"A": d, "B": d + 2 * (cfg.n_kv_heads or cfg.n_heads) * (d // cfg.n_heads), "C": d,
                "D": 2 * ffn_dim(cfg)}
    return sum(channels[site] for site in cfg.canon) * cfg.canon_kernel


def flops_per_token(cfg: ModelConfig, depth: int, seq_len: int) -> int:
    """Training FLOPs per token for a model of `cfg`'s width at `depth` layers."""
    head = cfg.d_model * cfg.vocab_size
    return 6 * (depth * (layer_matmul_params(cfg) + canon_params(cfg)) + head) + 12 * depth * seq_len * cfg.d_model


def flops_per_step(cfg: ModelConfig, depth: int, seq_len: int, batch_size: int) -> int:
    return flops_per_token(cfg, depth, seq_len) * seq_len * batch_size
