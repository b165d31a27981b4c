"""A Llama-style decoder-only transformer: RMSNorm, RoPE, SwiGLU, causal SDPA, no biases.

Parameter names follow Hugging Face's `LlamaForCausalLM` (`embed_tokens`, `layers.{i}.self_attn.q_proj`, ...,
`norm`, `lm_head`), so export is a renaming: add the `model.` prefix to everything but `lm_head`. RoPE uses the same
rotate-half layout as HF Llama.

The blocks live in `model.layers`, a plain `nn.ModuleList`: growth replaces that list, and parallelism and compile
wrap the blocks from outside. This file knows nothing of either. For inference, `forward` can take a `KVCache`:
the tokens it is given then continue the cached ones (prefill once, then score or decode the rest).

Optional Canon layers (`model.canon`; Allen-Zhu 2025, "Physics of Language Models: Part 4.1", arXiv 2512.17351): a
residual causal depthwise convolution over the last few tokens, h_t + sum_j w_j * h_(t-j), at any of the paper's
four sites: before attention on the normed input ("A"), inside attention on the concatenated query, key and value
projections before RoPE ("B"), before the MLP on the normed input ("C"), inside the MLP on the concatenated gate and
up projections before the gating ("D"), as the paper's reference implementation (facebookresearch/PhysicsLM4) places
them. They give every token a cheap path to its neighbours, which attention otherwise spends layers on. A Hugging
Face Llama has no such layer: such a model's export names its own architecture (hf.py).

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


class KVCache:
    """Inference only: the keys and values of the tokens run so far, one entry per layer position (a looped view
    that runs a block twice gets two entries), so that later tokens attend to them without recomputing them."""

    def __init__(self) -> None:
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        # Canon layers: (layer position, site) -> the inputs of the last kernel-1 tokens run (B, <= kernel-1, D)
        self.conv: dict[tuple[int, str], torch.Tensor] = {}

    @property
    def length(self) -> int:
        """Tokens cached so far (the position the next token takes)."""
        return self.kv[0][0].shape[2] if self.kv else 0

    def update(self, index: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new tokens' k, v (B, K, T, Dh) to layer position `index`; return all of them."""
        if index < len(self.kv):
            k, v = torch.cat([self.kv[index][0], k], dim=2), torch.cat([self.kv[index][1], v], dim=2)
            self.kv[index] = (k, v)
        else:
            assert index == len(self.kv), (index, len(self.kv))
            self.kv.append((k, v))
        return k, v

    def expand(self, batch: int) -> KVCache:
        """A cache of one sequence seen as `batch` identical ones (no copy), e.g. a prompt shared by candidates."""
        assert all(k.shape[0] == 1 for k, _ in self.kv)
        out = KVCache()
        out.kv = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self.kv]
        out.conv = {key: h.expand(batch, -1, -1) for key, h in self.conv.items()}
        return out

    def copy(self) -> KVCache:
        """A cache holding the same entries (updates replace entries, never change them, so nothing is cloned)."""
        out = KVCache()
        out.kv, out.conv = list(self.kv), dict(self.conv)
        return out


class Canon(nn.Module):
    """A Canon layer: x_t + sum_j weight[:, K-1-j] * x_(t-j) over j = 0..K-1, per channel (a causal depthwise
    convolution with a residual; zero before the sequence starts). `init` (model.canon_init): "zero", the weight
    starts at zero, the identity; "conv", PyTorch's Conv1d default, uniform in ±1/sqrt(K), as the paper's reference
    implementation initialises it."""

    def __init__(self, dim: int, kernel: int, init: str = "zero"):
        super().__init__()
        self.init = init
        self.weight = nn.Parameter(torch.zeros(dim, kernel))  # column K-1 weighs the current token
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init == "zero":
            nn.init.zeros_(self.weight)
        else:  # Conv1d's kaiming_uniform_(a=sqrt(5)) on a depthwise filter: fan-in K, bound 1/sqrt(K)
            bound = 1 / math.sqrt(self.weight.shape[1])
            nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, key: tuple[int, str] = (0, "")) -> torch.Tensor:
        B, T, D = x.shape
        kernel = self.weight.shape[1]
        past = cache.conv.get(key) if cache is not None else None
        if past is None:
            past = x.new_zeros(B, 0, D)
        h = torch.cat([x.new_zeros(B, kernel - 1 - past.shape[1], D), past, x], dim=1)  # (B, K-1+T, D)
        if cache is not None:
            cache.conv[key] = h[:, -(kernel - 1):]
        y = F.conv1d(h.transpose(1, 2), self.weight[:, None, :].to(x.dtype), groups=D)  # (B, D, T)
        return x + y.transpose(1, 2)


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
        if "B" in cfg.canon:
            self.canon_b = Canon((self.n_heads + 2 * self.n_kv_heads) * self.head_dim, cfg.canon_kernel,
                                 cfg.canon_init)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                index: int = 0) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if hasattr(self, "canon_b"):
            qkv = self.canon_b(torch.cat([q, k, v], dim=-1), cache, (index, "B"))
            q, k, v = qkv.split([q.shape[-1], k.shape[-1], v.shape[-1]], dim=-1)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        k = k.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, K, T, Dh)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(index, k, v)  # (B, K, P + T, Dh): P cached tokens come first
        if self.n_kv_heads != self.n_heads:
            repeat = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        past = k.shape[2] - T
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, Dh)
        else:  # new token i sees every cached token and the new ones up to itself
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = ffn_dim(cfg)
        self.gate_proj = nn.Linear(cfg.d_model, hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, cfg.d_model, bias=False)
        if "D" in cfg.canon:
            self.canon_d = Canon(2 * hidden, cfg.canon_kernel, cfg.canon_init)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, index: int = 0) -> torch.Tensor:
        gate, up = self.gate_proj(x), self.up_proj(x)
        if hasattr(self, "canon_d"):
            gate, up = self.canon_d(torch.cat([gate, up], dim=-1), cache, (index, "D")).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """One pre-norm transformer layer. `layer_idx` is its position in the stack (renumbered after growth)."""

    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)
        if "A" in cfg.canon:
            self.canon_a = Canon(cfg.d_model, cfg.canon_kernel, cfg.canon_init)
        if "C" in cfg.canon:
            self.canon_c = Canon(cfg.d_model, cfg.canon_kernel, cfg.canon_init)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                index: int = 0) -> torch.Tensor:
        """`index`: this block's position in the stack being run, its entry in `cache`."""
        h = self.input_layernorm(x)
        if hasattr(self, "canon_a"):
            h = self.canon_a(h, cache, (index, "A"))
        x = x + self.self_attn(h, cos, sin, cache, index)
        h = self.post_attention_layernorm(x)
        if hasattr(self, "canon_c"):
            h = self.canon_c(h, cache, (index, "C"))
        return x + self.mlp(h, cache, index)


# Output projections: their init is scaled down with depth so the residual stream's variance stays O(1).
OUTPUT_PROJECTIONS = ("self_attn.o_proj", "mlp.down_proj")


def init_block(block: Block, std: float, n_layers: int) -> None:
    """Std-`std` normal init; output projections get std / sqrt(2 · n_layers) (GPT-2 / Llama practice); Canon
    layers as model.canon_init says (by default zero: the identity)."""
    for module in block.modules():
        if isinstance(module, Canon):
            module.reset_parameters()
    for name, p in block.named_parameters():
        if name.endswith("layernorm.weight"):
            nn.init.ones_(p)
        elif "canon_" in name:
            continue
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

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The final normed hidden states (B, T, D), what `lm_head` reads (callers that need the logits of a few
        positions only apply the head to those). With a `cache` (inference), idx continues the cached tokens and
        its keys and values are added to the cache."""
        T = idx.shape[1]
        past = cache.length if cache is not None else 0
        head_dim = self.cfg.d_model // self.cfg.n_heads
        cos, sin = rope_cache(past + T, head_dim, self.cfg.rope_theta, idx.device)
        x = self.embed_tokens(idx)  # (B, T, D)
        cos, sin = cos[past:].to(x.dtype), sin[past:].to(x.dtype)
        for i, block in enumerate(self.layers):
            # (training calls pass no index: a compiled block would specialize on it and recompile per layer)
            x = block(x, cos, sin) if cache is None else block(x, cos, sin, cache, i)
        return self.norm(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """idx: (B, T) token ids. Returns logits (B, T, V), or the mean cross-entropy if targets are given. `cache`:
        as in `hidden`."""
        logits = self.lm_head(self.hidden(idx, cache))  # (B, T, V)
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 0.8, top_k: int = 50,
                 context: int = 1024, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample continuations of idx (B, T). Decodes with a KV cache while everything fits the context; beyond
        it, each step recomputes the last `context` tokens."""
        cache = KVCache() if idx.shape[1] + max_new_tokens <= context else None
        new = idx
        for _ in range(max_new_tokens):
            logits = self(new, cache=cache) if cache is not None else self(idx[:, -context:])
            logits = logits[:, -1, :].float() / max(temperature, 1e-6)
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, dim=-1)
            new = torch.multinomial(probs, 1, generator=generator)
            idx = torch.cat([idx, new], dim=1)
        return idx


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (a tied embedding counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
