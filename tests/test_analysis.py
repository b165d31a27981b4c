"""Depth analyses: looping a block, skipping layers, the logit lens and layer similarities, checked against direct
hand computations on a tiny model. (`stackwise analyze` and `eval --loop` on a comparison: tests/test_compare.py.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stackwise import analysis
from stackwise.config import load
from stackwise.model import Transformer


@pytest.fixture(scope="module")
def model() -> Transformer:
    torch.manual_seed(0)
    cfg = load(None, {"model.n_layers": 4, "model.d_model": 32, "model.n_heads": 2, "model.vocab_size": 64})
    m = Transformer(cfg.model).eval()
    with torch.no_grad():  # a less trivial function than the init: larger residual branches
        for p in m.parameters():
            p.mul_(3.0) if p.ndim == 2 else None
    return m


@pytest.fixture(scope="module")
def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randint(0, 64, (2, 12), generator=g), torch.randint(0, 64, (2, 12), generator=g)) for _ in range(2)]


def _by_hand(model, layers, x, y) -> float:
    """The model's loss with the given list of layers, computed from scratch."""
    saved = model.layers
    model.layers = torch.nn.ModuleList(layers)
    try:
        with torch.no_grad():
            return float(model(x, y))
    finally:
        model.layers = saved


def test_looping_once_is_the_model_and_k_times_repeats_the_block(model, batches):
    x, y = batches[0]
    with torch.no_grad():
        assert torch.equal(analysis.looped(model, 1, 3, 1)(x), model(x))
        view = analysis.looped(model, 1, 3, 3)
        L = list(model.layers)
        assert [id(m) for m in view.layers] == [id(m) for m in [L[0], L[1], L[2], L[1], L[2], L[1], L[2], L[3]]]
        assert float(view(x, y)) == pytest.approx(_by_hand(model, [L[0], *L[1:3] * 3, L[3]], x, y), abs=1e-6)
    assert model.depth == 4  # the view leaves the model as it was
    assert sum(p.numel() for p in view.parameters()) == sum(p.numel() for p in model.parameters())


def test_skip_losses_match_removing_the_layer(model, batches):
    result = analysis.skip_losses(model, batches)
    base = sum(_by_hand(model, list(model.layers), x, y) for x, y in batches) / 2
    assert result["loss"] == pytest.approx(base, abs=1e-6)
    for i in range(4):
        kept = [m for j, m in enumerate(model.layers) if j != i]
        skipped = sum(_by_hand(model, kept, x, y) for x, y in batches) / 2
        assert result["increase"][i] == pytest.approx(skipped - base, abs=1e-6)


def test_the_logit_lens_by_hand(model, batches):
    lens = analysis.logit_lens(model, batches)
    assert lens["loss"][-1] == pytest.approx(analysis.skip_losses(model, batches)["loss"], abs=1e-6)
    for k in range(5):  # exiting after layer k = the first k layers, then the final norm and head
        by_hand = sum(_by_hand(model, list(model.layers)[:k], x, y) for x, y in batches) / 2
        assert lens["loss"][k] == pytest.approx(by_hand, abs=1e-5)
    exits, n = 0, 0
    for x, _ in batches:  # first layer from which every later layer's top-1 equals the final top-1
        tops = []
        for k in range(5):
            saved = model.layers
            model.layers = torch.nn.ModuleList(list(saved)[:k])
            with torch.no_grad():
                tops.append(model(x).argmax(-1))
            model.layers = saved
        for b in range(x.shape[0]):
            for t in range(x.shape[1]):
                first = 4
                while first > 0 and tops[first - 1][b, t] == tops[4][b, t]:
                    first -= 1
                exits, n = exits + first, n + 1
    assert lens["depth_score"] == pytest.approx(exits / n / 4)


def test_similarities_by_hand(model, batches):
    w = analysis.weight_similarity(model)
    vec = [torch.cat([p.detach().flatten() for p in blk.parameters() if p.ndim == 2]) for blk in model.layers]
    assert w[1][2] == pytest.approx(float(F.cosine_similarity(vec[1], vec[2], dim=0)), abs=1e-6)
    assert all(w[i][i] == pytest.approx(1.0, abs=1e-5) for i in range(4))
    u = analysis.update_similarity(model, batches)
    stream = [analysis.residual_stream(model, x) for x, _ in batches]
    want = sum(float(F.cosine_similarity(s[1] - s[0], s[3] - s[2], dim=-1).mean()) for s in stream) / 2
    assert u[0][2] == pytest.approx(want, abs=1e-5) and u[2][0] == pytest.approx(want, abs=1e-5)
