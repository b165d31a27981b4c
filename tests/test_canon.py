"""Canon layers (model.canon): the hand formula, the KV cache, zero init, growth, optimizers, export."""

import json

import pytest
import torch
from rich.console import Console

from stackwise import llama_config
from stackwise.config import ModelConfig, load
from stackwise.errors import UserError
from stackwise.evals import runner
from stackwise.flops import flops_per_token, parameter_count
from stackwise.grow import grow_layers
from stackwise.model import Canon, KVCache, Transformer, count_parameters
from stackwise.optim import build_optimizer
from stackwise.train import train

CFG = ModelConfig(n_layers=3, d_model=32, n_heads=4, vocab_size=97, canon="AC", canon_kernel=3)


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
    w = layer.weight
    expected = x.clone()
    for t in range(7):
        for j in range(3):
            if t - j >= 0:
                expected[:, t] += w[:, 2 - j] * x[:, t - j]
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_zero_init_is_the_plain_model():
    """A fresh Canon layer is the identity: the model computes what the same weights compute without them."""
    torch.manual_seed(0)
    model = Transformer(CFG)
    plain = Transformer(ModelConfig(n_layers=3, d_model=32, n_heads=4, vocab_size=97))
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and sorted(unexpected) == sorted(n for n in model.state_dict() if ".canon_" in n)
    assert len(unexpected) == 3 * 2
    x = torch.randint(0, 97, (2, 16))
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_kv_cache_continues_a_canon_model_exactly():
    """Prefill, continue in pieces shorter than the kernel, then as a batch sharing the prefix: one full pass."""
    model = _random_canon(Transformer(CFG)).eval()
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


@pytest.mark.parametrize("bad", ["B", "AA", "a"])
def test_bad_canon_sites_are_a_one_line_error(bad):
    with pytest.raises(UserError, match="model.canon"):
        load(None, {"model.canon": bad})
    with pytest.raises(UserError, match="model.canon_kernel"):
        load(None, {"model.canon": "A", "model.canon_kernel": 1})


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
