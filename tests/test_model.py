import dataclasses
import math

import pytest
import torch

from stackwise.config import ModelConfig
from stackwise.flops import flops_per_token, layer_matmul_params
from stackwise.model import Transformer, count_parameters, ffn_dim

CFG = ModelConfig(n_layers=3, d_model=32, n_heads=4, vocab_size=97)


def test_shapes_and_loss():
    torch.manual_seed(0)
    model = Transformer(CFG)
    idx = torch.randint(0, 97, (2, 11))
    assert model(idx).shape == (2, 11, 97)
    loss = model(idx, torch.randint(0, 97, (2, 11)))
    assert loss.ndim == 0
    assert abs(loss.item() - math.log(97)) < 0.1  # std-0.02 init: near-uniform predictions


@pytest.mark.parametrize("canon", ["", "AC", "ABCD"])
def test_causal(canon):
    """Changing a future token leaves every earlier position's logits unchanged (Canon layers, trained away from
    their identity init, included)."""
    torch.manual_seed(0)
    model = Transformer(dataclasses.replace(CFG, canon=canon, canon_kernel=3))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".canon_" in name:
                p.normal_(0.0, 0.3)
    idx = torch.randint(0, 97, (1, 16))
    changed = idx.clone()
    changed[0, 10] = (idx[0, 10] + 1) % 97
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10], rtol=0, atol=0)
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_grouped_query_attention_and_untied_head():
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, vocab_size=50, tie_embeddings=False)
    model = Transformer(cfg)
    assert model.layers[0].self_attn.k_proj.weight.shape == (16, 32)
    assert model.lm_head.weight is not model.embed_tokens.weight
    assert model(torch.randint(0, 50, (2, 8))).shape == (2, 8, 50)


def test_tied_head_and_parameter_names():
    model = Transformer(CFG)
    assert model.lm_head.weight is model.embed_tokens.weight
    names = set(dict(model.named_parameters()))
    for n in ("embed_tokens.weight", "norm.weight", "layers.2.self_attn.q_proj.weight",
              "layers.0.mlp.gate_proj.weight", "layers.1.post_attention_layernorm.weight"):
        assert n in names
    assert not any("bias" in n for n in names)


def test_init_std_and_depth_scaling():
    cfg = ModelConfig(n_layers=8, d_model=64, n_heads=4, vocab_size=512)
    torch.manual_seed(0)
    model = Transformer(cfg)
    assert model.embed_tokens.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.layers[0].self_attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.layers[0].mlp.down_proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)
    assert [b.layer_idx for b in model.layers] == list(range(8))


def test_flops_formula_counts_the_model_matmuls():
    model = Transformer(CFG)
    block_matmuls = sum(p.numel() for n, p in model.layers[0].named_parameters() if p.ndim == 2)
    assert layer_matmul_params(CFG) == block_matmuls
    T = 16
    expected = 6 * (3 * block_matmuls + 32 * 97) + 12 * 3 * T * 32
    assert flops_per_token(CFG, 3, T) == expected
    assert flops_per_token(CFG, 1, T) < flops_per_token(CFG, 3, T)
    assert ffn_dim(ModelConfig(d_model=768)) == 2048
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_generate_appends_tokens():
    model = Transformer(CFG)
    out = model.generate(torch.zeros(1, 3, dtype=torch.long), 5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 8)


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_kv_cache_continues_the_sequence_exactly(kv_heads):
    """Prefill part of a sequence, then feed the rest in pieces (several tokens, then one at a time, then as a
    batch sharing the prefix): every position's logits equal one full forward pass."""
    from stackwise.model import KVCache
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layers=3, d_model=32, n_heads=4, n_kv_heads=kv_heads, vocab_size=97)).eval()
    idx = torch.randint(0, 97, (1, 12))
    full = model(idx)
    cache = KVCache()
    parts = [model(idx[:, :5], cache=cache), model(idx[:, 5:8], cache=cache), model(idx[:, 8:9], cache=cache)]
    assert cache.length == 9
    torch.testing.assert_close(torch.cat(parts, dim=1), full[:, :9], atol=1e-5, rtol=1e-5)
    rest = torch.cat([idx[:, 9:], torch.randint(0, 97, (1, 3))])  # two continuations of the same 9-token prefix
    batched = model(rest, cache=cache.expand(2))
    torch.testing.assert_close(batched[:1], full[:, 9:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched[1:], model(torch.cat([idx[:, :9], rest[1:]], dim=1))[:, 9:],
                               atol=1e-5, rtol=1e-5)


def test_generate_with_and_without_cache_agree():
    """Sampling decodes with the cache when it fits the context and recomputes the window beyond: same tokens."""
    torch.manual_seed(0)
    model = Transformer(CFG).eval()
    prompt = torch.randint(0, 97, (2, 4))
    cached = model.generate(prompt, 6, context=64, generator=torch.Generator().manual_seed(1))
    recomputed = model.generate(prompt, 6, context=10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(cached, recomputed)
