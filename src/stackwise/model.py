"""A Llama-style decoder-only transformer: RMSNorm, RoPE, SwiGLU, causal SDPA, no biases.

Parameter names follow Hugging Face's `LlamaForCausalLM` (`embed_tokens`, `layers.{i}.self_attn.q_proj`, ...,
`norm`, `lm_head`), so export is a renaming: add the `model.` prefix to everything but `lm_head`. RoPE uses the same
rotate-half layout as HF Llama.

The blocks live in `model.layers`, a plain `nn.ModuleList`: growth replaces that list, and parallelism and compile
wrap the blocks from outside. This file knows nothing of either.

Shapes: B batch, T sequence, D d_model, H heads, K kv heads, Dh head dim, V vocab.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stackwise.config import ModelConfig
from stackwise.flops import ffn_dim  # noqa: F401 (part of the model's interface)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 (as HF Llama does), then cast back.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_cache(seq_len: int, head_dim: int, theta: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, Dh), HF Llama layout (frequencies repeated over the two halves)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq)  # (T, Dh/2)
    emb = torch.cat([angles, angles], dim=-1)  # (T, Dh)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, Dh). Rotate pairs (i, i + Dh/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.n_kv_heads = cfg.n_kv_heads or cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.q_proj = nn.Linear(cfg.d_model, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, self.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, self.n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, K, T, Dh)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.n_kv_heads != self.n_heads:
            repeat = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, Dh)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = ffn_dim(cfg)
        self.gate_proj = nn.Linear(cfg.d_model, hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """One pre-norm transformer layer. `layer_idx` is its position in the stack (renumbered after growth)."""

    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


# Output projections: their init is scaled down with depth so the residual stream's variance stays O(1).
OUTPUT_PROJECTIONS = ("self_attn.o_proj", "mlp.down_proj")


def init_block(block: Block, std: float, n_layers: int) -> None:
    """Std-`std` normal init; output projections get std / sqrt(2 · n_layers) (GPT-2 / Llama practice)."""
    for name, p in block.named_parameters():
        if name.endswith("layernorm.weight"):
            nn.init.ones_(p)
        elif any(name.startswith(o) for o in OUTPUT_PROJECTIONS):
            nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * n_layers))
        else:
            nn.init.normal_(p, mean=0.0, std=std)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, n_layers: int | None = None):
        """A model of `cfg`'s width with `n_layers` blocks (default: cfg.n_layers, the target depth)."""
        super().__init__()
        self.cfg = cfg
        depth = cfg.n_layers if n_layers is None else n_layers
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(depth))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.cfg.init_std
        nn.init.normal_(self.embed_tokens.weight, mean=0.0, std=std)
        if not self.cfg.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, mean=0.0, std=std)
        nn.init.ones_(self.norm.weight)
        for block in self.layers:
            init_block(block, std, self.cfg.n_layers)

    @property
    def depth(self) -> int:
        return len(self.layers)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """idx: (B, T) token ids. Returns logits (B, T, V), or the mean cross-entropy if targets are given."""
        T = idx.shape[1]
        head_dim = self.cfg.d_model // self.cfg.n_heads
        cos, sin = rope_cache(T, head_dim, self.cfg.rope_theta, idx.device)
        x = self.embed_tokens(idx)  # (B, T, D)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        for block in self.layers:
            x = block(x, cos, sin)
        logits = self.lm_head(self.norm(x))  # (B, T, V)
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 0.8, top_k: int = 50,
                 context: int = 1024, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample continuations of idx (B, T); recomputes the window each step (no KV cache: short samples only)."""
        for _ in range(max_new_tokens):
            logits = self(idx[:, -context:])[:, -1, :].float() / max(temperature, 1e-6)
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, dim=-1)
            idx = torch.cat([idx, torch.multinomial(probs, 1, generator=generator)], dim=1)
        return idx


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (a tied embedding counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
