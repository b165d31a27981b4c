"""Canon layers (model.canon): the hand formula, the four sites, the KV cache, zero and conv init, growth,
optimizers, export."""

import dataclasses
import json
import math

import pytest
import torch
from rich.console import Console

from stackwise import llama_config
from stackwise.config import ModelConfig, load
from stackwise.errors import UserError
from stackwise.evals import runner
from stackwise.flops import flops_per_token, parameter_count
from stackwise.grow import grow_layers
from stackwise.model import MLP, Attention, Canon, KVCache, Transformer, apply_rope, count_parameters, rope_cache
from stackwise.optim import build_optimizer
from stackwise.train import train

CFG = ModelConfig(n_layers=3, d_model=32, n_heads=4, vocab_size=97, canon="AC", canon_kernel=3)
ABCD = dataclasses.replace(CFG, canon="ABCD", n_kv_heads=2)  # B's channels: 32 queries, 16 keys, 16 values


def _by_hand(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The Canon formula written out: x_t + sum_j w[:, K-1-j] * x_(t-j), zero before the first token."""
    out = x.clone()
    kernel = w.shape[1]
    for t in range(x.shape[1]):
        for j in range(kernel):
            if t - j >= 0:
                out[:, t] += w[:, kernel - 1 - j] * x[:, t - j]
    return out


def _random_canon(model: Transformer, std: float = 0.3) -> Transformer:
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".canon_" in name:
                p.normal_(0.0, std)
    return model


def test_canon_layer_is_the_hand_formula():
    """y_t = x_t + sum_j w[:, K-1-j] * x_(t-j), zero before the first token, per channel."""
    torch.manual_seed(0)
    layer = Canon(5, 3)
    with torch.no_grad():
        layer.weight.normal_()
    x = torch.randn(2, 7, 5)
    torch.testing.assert_close(layer(x), _by_hand(x, layer.weight), rtol=1e-5, atol=1e-6)


def test_canon_b_mixes_the_query_key_and_value_projections_before_rope():
    """Site B: the Canon formula on the concatenated q, k, v projections (grouped-query: 32 + 16 + 16 channels),
    then RoPE and causal attention as usual."""
    torch.manual_seed(0)
    attn = Attention(ABCD)
    with torch.no_grad():
        attn.canon_b.weight.normal_(0.0, 0.5)
    assert attn.canon_b.weight.shape == (64, 3)
    x = torch.randn(2, 9, 32)
    cos, sin = rope_cache(9, 8, ABCD.rope_theta)
    mixed = _by_hand(torch.cat([attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)], dim=-1), attn.canon_b.weight)
    q, k, v = (t.view(2, 9, -1, 8).transpose(1, 2) for t in mixed.split([32, 16, 16], dim=-1))
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    k, v = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(8) + torch.full((9, 9), float("-inf")).triu(1)
    expected = attn.o_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 9, 32))
    torch.testing.assert_close(attn(x, cos, sin), expected, rtol=1e-4, atol=1e-5)


def test_canon_d_mixes_the_gate_and_up_projections_before_the_gating():
    torch.manual_seed(0)
    mlp = MLP(ABCD)
    with torch.no_grad():
        mlp.canon_d.weight.normal_(0.0, 0.5)
    hidden = mlp.gate_proj.out_features
    assert mlp.canon_d.weight.shape == (2 * hidden, 3)
    x = torch.randn(2, 9, 32)
    gate, up = _by_hand(torch.cat([mlp.gate_proj(x), mlp.up_proj(x)], dim=-1), mlp.canon_d.weight).chunk(2, dim=-1)
    torch.testing.assert_close(mlp(x), mlp.down_proj(torch.nn.functional.silu(gate) * up), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cfg", [CFG, ABCD], ids=["AC", "ABCD"])
def test_zero_init_is_the_plain_model(cfg):
    """A fresh Canon layer is the identity: the model computes what the same weights compute without them."""
    torch.manual_seed(0)
    model = Transformer(cfg)
    plain = Transformer(dataclasses.replace(cfg, canon=""))
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and sorted(unexpected) == sorted(n for n in model.state_dict() if ".canon_" in n)
    assert len(unexpected) == 3 * len(cfg.canon)
    x = torch.randint(0, 97, (2, 16))
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_conv_init_is_pytorchs_conv1d_default():
    """model.canon_init conv: every site's filter uniform in ±1/sqrt(K), as nn.Conv1d initialises a depthwise
    filter (the paper's reference implementation); a freshly initialised grown layer gets the same."""
    cfg = dataclasses.replace(ABCD, canon_init="conv")
    torch.manual_seed(0)
    model = Transformer(cfg)
    filters = {n: p for n, p in model.named_parameters() if ".canon_" in n}
    assert len(filters) == 3 * 4
    bound = 1 / math.sqrt(3)
    for p in filters.values():
        assert p.abs().max() <= bound and p.abs().max() > 0.8 * bound and abs(p.mean()) < 0.1
    conv = torch.nn.Conv1d(8, 8, 3, groups=8, bias=False)
    assert conv.weight.abs().max() <= bound  # the same bound as PyTorch's own
    fresh = grow_layers(list(model.layers), [0, 1, 1, 2], "random", 0.02, 4)
    assert torch.count_nonzero(fresh[2].self_attn.canon_b.weight) == fresh[2].self_attn.canon_b.weight.numel()
    assert not torch.equal(fresh[2].mlp.canon_d.weight, model.layers[1].mlp.canon_d.weight)


@pytest.mark.parametrize("cfg", [CFG, ABCD], ids=["AC", "ABCD"])
def test_kv_cache_continues_a_canon_model_exactly(cfg):
    """Prefill, continue in pieces shorter than the kernel, then as a batch sharing the prefix: one full pass."""
    model = _random_canon(Transformer(cfg)).eval()
    idx = torch.randint(0, 97, (1, 12))
    full = model(idx)
    cache = KVCache()
    parts = [model(idx[:, :1], cache=cache), model(idx[:, 1:6], cache=cache), model(idx[:, 6:7], cache=cache),
             model(idx[:, 7:9], cache=cache)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full[:, :9], atol=1e-5, rtol=1e-5)
    saved = cache.copy()
    rest = torch.cat([idx[:, 9:], torch.randint(0, 97, (1, 3))])
    batched = model(rest, cache=cache.expand(2))
    torch.testing.assert_close(batched[:1], full[:, 9:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(idx[:, 9:], cache=saved), full[:, 9:], atol=1e-5, rtol=1e-5)


def test_parameter_and_flop_counts_include_canon():
    model = Transformer(CFG)
    assert parameter_count(CFG, 3) == count_parameters(model)
    plain = ModelConfig(n_layers=3, d_model=32, n_heads=4, vocab_size=97)
    assert parameter_count(CFG, 3) - parameter_count(plain, 3) == 3 * 2 * 32 * 3
    assert flops_per_token(CFG, 3, 16) - flops_per_token(plain, 3, 16) == 6 * 3 * 2 * 32 * 3
    model = Transformer(ABCD)
    assert parameter_count(ABCD, 3) == count_parameters(model)
    hidden = model.layers[0].mlp.gate_proj.out_features  # A, C: 32 channels; B: 32 + 16 + 16; D: 2 x hidden
    plain = dataclasses.replace(ABCD, canon="")
    assert parameter_count(ABCD, 3) - parameter_count(plain, 3) == 3 * (32 + 64 + 32 + 2 * hidden) * 3


def test_growth_copies_canon_layers():
    model = _random_canon(Transformer(CFG))
    grown = grow_layers(list(model.layers), [0, 1, 1, 2], "copy", 0.02, 4)
    torch.testing.assert_close(grown[2].canon_a.weight, model.layers[1].canon_a.weight, rtol=0, atol=0)
    assert grown[2].canon_c.weight is not model.layers[1].canon_c.weight
    fresh = grow_layers(list(model.layers), [0, 1, 1, 2], "random", 0.02, 4)
    assert torch.count_nonzero(fresh[2].canon_a.weight) == 0  # a fresh layer's Canon starts as the identity


def test_muon_leaves_canon_filters_to_adamw():
    cfg = load(None, {"model.n_layers": 2, "model.d_model": 32, "model.n_heads": 4, "model.vocab_size": 97,
                      "model.canon": "A", "optim.name": "muon"})
    model = Transformer(cfg.model)
    muon, adamw = build_optimizer(model, cfg).optimizers
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    in_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert not any(".canon_" in n for n in in_muon) and len(in_muon) == 7 * 2
    assert {f"layers.{i}.canon_a.weight" for i in range(2)} <= in_adamw


@pytest.mark.parametrize("bad", ["E", "AA", "a"])
def test_bad_canon_sites_are_a_one_line_error(bad):
    with pytest.raises(UserError, match="model.canon"):
        load(None, {"model.canon": bad})
    with pytest.raises(UserError, match="model.canon_kernel"):
        load(None, {"model.canon": "A", "model.canon_kernel": 1})
    with pytest.raises(UserError, match="model.canon_init"):
        load(None, {"model.canon": "A", "model.canon_init": "kaiming"})


def test_a_trained_canon_model_saves_loads_and_is_not_taken_for_a_llama(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_cfg(model__canon="AC", growth__method="midas", growth__block_size=1, model__n_layers=2,
                   train__steps=6, checkpoint__every=6)
    train(cfg, run, console=Console(quiet=True))
    config = json.loads((run / "final" / "config.json").read_text())
    assert config["architectures"] == ["StackwiseCanonForCausalLM"] and config["canon"] == "AC"
    (_, _, final), = runner.models(run, "final")
    (_, _, latest), = runner.models(run, "latest")
    assert final.depth == 2 and torch.count_nonzero(final.layers[1].canon_c.weight) > 0  # trained, grown
    x = torch.randint(0, cfg.model.vocab_size, (1, 12))
    torch.testing.assert_close(final(x), latest(x), rtol=0, atol=0)
    with pytest.raises(UserError, match="StackwiseCanonForCausalLM is not supported"):
        llama_config.model_fields(config, "init.from: final")
