"""Growth operators, stage plans, function preservation, optimizer-state transfer and resume across growth."""

import contextlib
import json
import math
import shutil
from fractions import Fraction

import pytest
import torch
from rich.console import Console

from stackwise import checkpoint, growth, operators
from stackwise.config import load
from stackwise.errors import UserError
from stackwise.grow import grow, grow_layers
from stackwise.model import Block, Transformer
from stackwise.optim import build_optimizer
from stackwise.train import train, train_step

QUIET = Console(quiet=True)
CASES = [(L, b) for L in (6, 8, 12, 24) for b in (1, 2, 3, 4, 6) if L % b == 0 and L // b >= 2]


def _expected(method: str, d: int, b: int) -> list[int]:
    """The DESIGN.md formulas, written independently of the operators."""
    if method == "midas":
        j = math.ceil((d // b) / 2)  # 1-indexed block
        block = list(range((j - 1) * b, j * b))
        return list(range(0, j * b)) + block + list(range(j * b, d))
    if method == "lidas":
        lo = math.ceil(d / 2) - math.ceil(b / 2)
        return list(range(0, lo + b)) + list(range(lo, lo + b)) + list(range(lo + b, d))
    if method == "gradstack":
        return list(range(d)) + list(range(d - b, d))
    assert method == "progressive"
    return list(range(d)) * 2


@pytest.mark.parametrize("L, b", CASES)
@pytest.mark.parametrize("method", ["midas", "lidas", "gradstack"])
def test_source_maps_match_the_formulas(method, L, b):
    for d in range(b, L, b):
        src = growth.OPERATORS[method].source_map(d, b)
        assert src == _expected(method, d, b)
        assert len(src) == d + b and sorted(set(src)) == list(range(d))


@pytest.mark.parametrize("L, start", [(8, 1), (8, 2), (12, 3), (24, 3), (24, 6), (6, 3)])
def test_progressive_doubles(L, start):
    cfg = load(None, {"model.n_layers": L, "growth.method": "progressive", "growth.start_layers": start,
                      "train.steps": 1000})
    stages = growth.plan(cfg)
    assert [s.depth for s in stages][0] == start and stages[-1].depth == L
    for prev, s in zip(stages, stages[1:]):
        assert s.depth == 2 * prev.depth and list(s.source_layers) == _expected("progressive", prev.depth, 0)


def test_design_examples():
    assert growth.midas(12, 4) == [0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7, 8, 9, 10, 11]
    assert growth.lidas(8, 4) == [0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 6, 7]
    assert growth.gradstack(8, 4) == [0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7]
    assert growth.progressive(4, 4) == [0, 1, 2, 3, 0, 1, 2, 3]
    cfg = load(None, {"model.n_layers": 24, "growth.method": "midas", "growth.block_size": 4, "train.steps": 600})
    copied = []
    for s in growth.plan(cfg)[1:]:
        new = growth.new_positions(list(s.source_layers))
        copied.append([s.source_layers[i] for i in new])
    assert copied == [[0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7], [4, 5, 6, 7], [8, 9, 10, 11]]
    for d in (4, 12, 20):  # n odd: LIDAS equals MIDAS
        assert growth.lidas(d, 4) == growth.midas(d, 4)


@pytest.mark.parametrize("alpha", [0, 0.5, 1, 2, 3])
@pytest.mark.parametrize("T", [500, 600, 997, 10000])
def test_prop_alpha_boundaries(alpha, T):
    cfg = load(None, {"model.n_layers": 6, "growth.method": "midas", "growth.block_size": 1, "growth.alpha": alpha,
                      "train.steps": T})
    stages = growth.plan(cfg)
    T = cfg.train.steps
    assert stages[0].start_step == 0 and stages[-1].end_step == T
    assert all(a.end_step == b.start_step for a, b in zip(stages, stages[1:]))
    assert sum(s.steps for s in stages) == T
    w = [Fraction(str(j ** alpha)) for j in range(1, 7)]
    for i, s in enumerate(stages, 1):  # cumulative floor: B_i = floor(T * sum_{j<=i} j^a / sum j^a), exactly
        assert s.end_step == (T if i == 6 else math.floor(T * sum(w[:i]) / sum(w)))
    if alpha == 0 and T % 6 == 0:
        assert {s.steps for s in stages} == {T // 6}
    if alpha > 0:
        assert all(a.steps <= b.steps + 1 for a, b in zip(stages, stages[1:]))


@pytest.mark.parametrize("fractions", [["0.1", "0.7", "0.2"], ["0.3", "0.7"], ["0.2", "0.2", "0.6"],
                                       ["0.05", "0.15", "0.35", "0.45"], ["0.6", "0.1", "0.1", "0.1", "0.1"]])
def test_stage_fraction_boundaries_are_exact(fractions):
    """Float sums used to floor a boundary one step short ([0.1, 0.7, 0.2] of T=10 gave 0, 1, 7, 10): every T < 5000
    against exact rational arithmetic on the fractions as written."""
    exact = [Fraction(f) for f in fractions]
    for T in range(1, 5000):
        want = [0, *(math.floor(T * sum(exact[:i])) for i in range(1, len(exact))), T]
        assert operators.stage_bounds(T, len(exact), 1.0, [float(f) for f in fractions]) == want, T
    if fractions == ["0.1", "0.7", "0.2"]:
        assert operators.stage_bounds(10, 3, 1.0, [0.1, 0.7, 0.2]) == [0, 1, 8, 10]


def test_stage_fractions_and_speedups():
    cfg = load(None, {"model.n_layers": 4, "growth.method": "midas", "growth.block_size": 2, "train.steps": 10,
                      "growth.stage_fractions": "0.3,0.7"})
    assert [(s.start_step, s.end_step) for s in growth.plan(cfg)] == [(0, 3), (3, 10)]
    bracketed = load(None, {"model.n_layers": 4, "growth.method": "midas", "growth.block_size": 2,
                            "train.steps": 10, "growth.stage_fractions": "[0.3, 0.7]"})
    assert bracketed.growth.stage_fractions == [0.3, 0.7]
    for alpha, k, want in [(1, 6, 1.385), (2, 6, 1.238), (3, 6, 1.163), (2, 8, 1.259)]:
        cfg = load(None, {"model.n_layers": k, "growth.method": "midas", "growth.block_size": 1,
                          "growth.alpha": alpha, "train.steps": 10**7})
        sp = growth.speedup(cfg, growth.plan(cfg))
        assert sp["layer_flops"] == pytest.approx(want, abs=1e-3)
        assert 1 < sp["total_flops"] < sp["layer_flops"]
    base = load(None, {"train.steps": 100})
    assert growth.speedup(base, growth.plan(base)) == {"layer_flops": 1.0, "total_flops": 1.0}


@pytest.mark.parametrize("overrides, field", [
    ({"model.n_layers": 6, "growth.method": "midas", "growth.block_size": 4}, "growth.block_size"),
    ({"model.n_layers": 6, "growth.method": "progressive", "growth.start_layers": 4}, "growth.start_layers"),
    ({"model.n_layers": 4, "growth.method": "midas", "growth.stage_fractions": "0.5,0.2"}, "growth.stage_fractions"),
    ({"model.n_layers": 4, "growth.method": "midas", "growth.stage_fractions": "1"}, "growth.stage_fractions"),
    ({"model.n_layers": 8, "growth.method": "midas", "growth.block_size": 1, "train.steps": 5}, "train.steps"),
    ({"growth.method": "midas", "growth.alpha": -1}, "growth.alpha"),
    ({"growth.init": "zeros"}, "growth.init"),
    ({"growth.optimizer_state": "keep"}, "growth.optimizer_state"),
])
def test_growth_config_errors(overrides, field):
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        load(None, overrides)


def _grown(method="midas", init="copy", opt_state="copy", optim="adamw", L=4, b=2, noise=0.0):
    cfg = load(None, {"model.n_layers": L, "model.d_model": 32, "model.n_heads": 2, "model.vocab_size": 64,
                      "growth.method": method, "growth.block_size": b, "growth.init": init,
                      "growth.optimizer_state": opt_state, "optim.name": optim, "train.steps": 20,
                      "growth.copy_noise": noise})
    stages = growth.plan(cfg)
    torch.manual_seed(0)
    model = Transformer(cfg.model, n_layers=stages[0].depth)
    opt = build_optimizer(model, cfg)
    x = torch.randint(0, 64, (2, 8))
    for _ in range(2):  # give the optimizer real state (through the train step: Sophia's Hessian estimate too)
        train_step(model, model, opt, (x, x), cfg, torch.device("cpu"), contextlib.nullcontext)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    old_state = {n: opt_state_of(opt, p) for n, p in model.named_parameters()}
    logits_before = model(x)
    new_opt = grow(model, opt, stages[1], cfg)
    return cfg, stages[1], model, new_opt, before, old_state, logits_before, x


def opt_state_of(opt, p):
    for o in opt.optimizers:
        if p in o.state:
            return {k: v.clone() if torch.is_tensor(v) else v for k, v in o.state[p].items()}
    return {}


@pytest.mark.parametrize("method", ["midas", "lidas", "gradstack", "progressive"])
def test_new_layers_copy_their_source_bitwise(method):
    cfg, stage, model, _, before, _, _, _ = _grown(method, L=8, b=2)
    assert model.depth == stage.depth
    for i, src in enumerate(stage.source_layers):
        assert model.layers[i].layer_idx == i
        for name, p in model.layers[i].named_parameters():
            assert torch.equal(p, before[f"layers.{src}.{name}"]), (i, name)
    ptrs = [p.data_ptr() for p in model.parameters()]
    assert len(ptrs) == len(set(ptrs))  # copies are new tensors, not aliases


def test_identity_init_preserves_the_function():
    cfg, stage, model, _, _, _, logits_before, x = _grown("midas", init="identity", L=6, b=2)
    assert model.depth == 4
    torch.testing.assert_close(model(x), logits_before, rtol=0, atol=1e-6)
    new = growth.new_positions(list(stage.source_layers))
    assert all(model.layers[i].mlp.down_proj.weight.abs().sum() == 0 for i in new)


@pytest.mark.parametrize("init", ["copy", "identity"])
def test_copy_noise_breaks_symmetry_and_identity_still_preserves_the_function(init):
    layers = [Block(load(None, {}).model, i) for i in range(2)]
    src = [0, 1, 0, 1]
    torch.manual_seed(0)
    grown = grow_layers(layers, src, init, 0.02, 4, noise=0.05)
    assert grown[0] is layers[0] and grown[1] is layers[1]  # kept layers are untouched
    for i in (2, 3):
        for (name, new), old in zip(grown[i].named_parameters(), layers[src[i]].parameters(), strict=True):
            if init == "identity" and name.endswith(("o_proj.weight", "down_proj.weight")):
                assert new.abs().sum() == 0
            elif new.ndim == 2:
                assert float((new - old).detach().std() / old.detach().std()) == pytest.approx(0.05, rel=0.1), name
            else:
                assert torch.equal(new, old), name  # norm gains are copied exactly
    if init == "identity":
        cfg, _, model, _, _, _, logits_before, x = _grown("midas", init="identity", L=6, b=2, noise=0.05)
        assert cfg.growth.copy_noise == 0.05
        torch.testing.assert_close(model(x), logits_before, rtol=0, atol=1e-6)


def test_random_init_reinitialises_only_new_layers():
    cfg, stage, model, _, before, _, _, _ = _grown("gradstack", init="random", L=6, b=2)
    new = growth.new_positions(list(stage.source_layers))
    for i, src in enumerate(stage.source_layers):
        same = torch.equal(model.layers[i].self_attn.q_proj.weight, before[f"layers.{src}.self_attn.q_proj.weight"])
        assert same == (i not in new)


def _same(a, b) -> bool:
    """Equal optimizer-state values: tensors bitwise, lists (SOAP's and Shampoo's preconditioner factors) item by
    item, anything else by ==."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


@pytest.mark.parametrize("optim", ["adamw", "adafactor", "sophia", "muon", "soap", "shampoo", "psgd"])
def test_optimizer_state_is_copied_from_the_source(optim):
    cfg, stage, model, opt, _, old_state, _, x = _grown("midas", optim=optim, L=4, b=1)
    for name, p in model.named_parameters():
        src_name = name
        if name.startswith("layers."):
            _, i, rest = name.split(".", 2)
            src_name = f"layers.{stage.source_layers[int(i)]}.{rest}"
        got, want = opt_state_of(opt, p), old_state[src_name]
        assert got.keys() == want.keys() and got, name
        for k in want:
            assert _same(got[k], want[k]), (name, k)
    if optim in ("soap", "sophia"):  # a per-group step count goes on (SOAP would skip the step after growth, and
        assert opt.optimizers[0].param_groups[0]["step"] == 2  # Sophia's estimate would fall due off its period)
    if optim == "sophia":
        assert set(opt_state_of(opt, model.embed_tokens.weight)) == {"momentum", "hessian_moment", "hessian"}
    # every parameter is in the optimizer exactly once and gets a gradient
    in_opt = [p for g in opt.param_groups for p in g["params"]]
    assert {id(p) for p in in_opt} == {id(p) for p in model.parameters()} and len(in_opt) == len(set(map(id, in_opt)))
    model(x, x).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())


@pytest.mark.parametrize("init, fresh_new_layers", [("copy", False), ("random", True), ("identity", True)])
def test_the_default_optimizer_state_policy_follows_the_init(init, fresh_new_layers):
    """auto: copied layers take their source's moments; random or identity layers start fresh (the confound of
    handing a fresh layer its source's Adam state is gone by default)."""
    cfg, stage, model, opt, _, _, _, _ = _grown("midas", init=init, opt_state="auto", L=4, b=1)
    assert load(None, {}).growth.optimizer_state == "auto"
    new = set(growth.new_positions(list(stage.source_layers)))
    for i, layer in enumerate(model.layers):
        has = bool(opt_state_of(opt, layer.mlp.down_proj.weight))
        assert has == (i not in new or not fresh_new_layers), (init, i)


@pytest.mark.parametrize("optim", ["adamw", "sophia", "soap", "shampoo", "psgd"])
def test_reset_new_and_reset_all(optim):
    _, stage, model, opt, _, _, _, _ = _grown("midas", opt_state="reset-new", L=4, b=1, optim=optim)
    new = set(growth.new_positions(list(stage.source_layers)))
    for i, layer in enumerate(model.layers):
        has = bool(opt_state_of(opt, layer.self_attn.q_proj.weight))
        assert has == (i not in new)
    assert opt_state_of(opt, model.embed_tokens.weight)
    _, _, model, opt, _, _, _, _ = _grown("midas", opt_state="reset-all", L=4, b=1, optim=optim)
    assert not any(opt_state_of(opt, p) for p in model.parameters())


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_grows_at_the_planned_boundaries(tiny_cfg, tmp_path):
    cfg = tiny_cfg(model__n_layers=4, growth__method="midas", growth__block_size=1, growth__alpha=1,
                   train__steps=20, checkpoint__keep=1)
    train(cfg, tmp_path / "run", console=QUIET)
    m = _metrics(tmp_path / "run")
    stages = growth.plan(cfg)
    for s in stages:
        for r in m:
            if s.start_step < r["step"] <= s.end_step:
                assert r["depth"] == s.depth and r["stage"] == s.index
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert [(e["step"], e["depth"]) for e in events] == [(s.start_step, s.depth) for s in stages[1:]]
    flops = [r["flops"] for r in m]
    per_step = [b - a for a, b in zip([0, *flops], flops)]
    assert per_step[0] < per_step[-1]  # FLOPs follow the real depth
    kept = [p.name for p in checkpoint.list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert kept == [f"step_{s.end_step:07d}" for s in stages]  # boundaries survive rotation, plus the final one
    assert json.loads((tmp_path / "run" / "final" / "config.json").read_text())["num_hidden_layers"] == 4


def test_method_none_takes_the_same_path_with_one_stage(tiny_cfg, tmp_path):
    a = train(tiny_cfg(train__steps=6), tmp_path / "a", console=QUIET)
    b = train(tiny_cfg(train__steps=6, growth__method="gradstack", growth__block_size=2,
                       growth__stage_fractions="1"), tmp_path / "b", console=QUIET)
    assert a.final_val_loss == b.final_val_loss  # a one-stage growth plan is the baseline, bit for bit
    assert not (tmp_path / "a" / "events.jsonl").exists()


@pytest.mark.parametrize("optim, cuts", [("adamw", ("step_0000002", "step_0000005", "step_0000010", "step_0000012")),
                                         ("muon", ("step_0000002", "step_0000005", "step_0000010", "step_0000012")),
                                         ("soap", ("step_0000005",)), ("shampoo", ("step_0000005",)),
                                         ("psgd", ("step_0000005",)), ("sophia", ("step_0000005",))])
def test_resume_across_two_growth_events_equals_uninterrupted(tiny_cfg, tmp_path, optim, cuts):
    cfg = tiny_cfg(model__n_layers=3, growth__method="midas", growth__block_size=1, growth__alpha=0,
                   train__steps=15, checkpoint__every=2, checkpoint__keep=20, train__log_every=1, optim__name=optim,
                   growth__init="random")
    full = tmp_path / "full"
    train(cfg, full, console=QUIET)
    ckpts = checkpoint.list_checkpoints(full / "checkpoints")
    for keep in cuts:  # before, at and after growth
        cut = tmp_path / keep
        shutil.copytree(full, cut)
        for p in ckpts:
            if p.name != keep:
                shutil.rmtree(cut / "checkpoints" / p.name)
        train(cfg, cut, resume=True, console=QUIET)
        strip = lambda ms: [(r["step"], r["train_loss"], r.get("val_loss"), r["depth"]) for r in ms]  # noqa: E731
        assert strip(_metrics(cut)) == strip(_metrics(full)), keep


def test_compiled_training_through_growth_matches_eager(tiny_cfg, tmp_path, monkeypatch):
    """Per-block compile is undone and redone at growth: a copied block must run its own weights, not its source's.

    The dynamo 'eager' backend keeps this fast on CPU and exact; the wrapping logic under test is the same."""
    original = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: original(self, backend="eager", **kw))
    common = {"model__n_layers": 3, "growth__method": "midas", "growth__block_size": 1, "train__steps": 12}
    eager = train(tiny_cfg(**common), tmp_path / "eager", console=QUIET)
    compiled = train(tiny_cfg(**common, train__compile=True), tmp_path / "compiled", console=QUIET)
    assert compiled.final_val_loss == pytest.approx(eager.final_val_loss, rel=1e-6)
    strip = lambda ms: [round(r["train_loss"], 5) for r in ms]  # noqa: E731
    assert strip(_metrics(tmp_path / "compiled")) == strip(_metrics(tmp_path / "eager"))


# Per-step (step, train_loss, val_loss) of the trainer as it was before growth existed, on the conftest corpus and
# TINY config for 8 steps (written by that trainer on this machine type). `none` must still give exactly these.
PRE_GROWTH = [[1, 5.7372283935546875, None], [2, 5.6796135902404785, None], [3, 5.537646770477295, None],
              [4, 5.409169673919678, 5.3068811893463135], [5, 5.286105155944824, None],
              [6, 5.209195613861084, None], [7, 5.155599117279053, None], [8, 5.152113914489746, 5.15249228477478]]


def test_method_none_reproduces_the_pre_growth_trainer(tiny_cfg, tmp_path):
    train(tiny_cfg(train__steps=8), tmp_path / "run", console=QUIET)
    got = [[r["step"], r["train_loss"], r.get("val_loss")] for r in _metrics(tmp_path / "run")]
    for (s, loss, val), (s2, loss2, val2) in zip(got, PRE_GROWTH, strict=True):
        assert s == s2 and loss == pytest.approx(loss2, rel=1e-6)
        assert (val is None and val2 is None) or val == pytest.approx(val2, rel=1e-6)


def test_lr_drop_and_depth_lr_reach_the_optimizer_at_every_step(tiny_cfg, tmp_path, monkeypatch):
    """The two LR stabilizers, end to end: at each step of a grown run the optimizer's groups get the schedule times
    lr_drop^(events so far), and the blocks' groups that times (n_layers / depth)^e; the logged LR is the former."""
    import stackwise.train as train_mod
    from stackwise.optim import lr_at

    calls = []
    real = train_mod.set_lr
    monkeypatch.setattr(train_mod, "set_lr", lambda opt, lr, block_lr=None: calls.append((lr, block_lr, [
        (g.get("blocks"), g["lr"]) for g in opt.param_groups])) or real(opt, lr, block_lr))
    cfg = tiny_cfg(model__n_layers=4, growth__method="midas", growth__block_size=1, train__steps=12,
                   growth__lr_drop=0.5, growth__depth_lr_exponent=0.5, eval__every=0)
    train(cfg, tmp_path / "run", console=QUIET)
    plain = tiny_cfg(model__n_layers=4, train__steps=12)
    stages = growth.plan(cfg)
    assert len(calls) == 12 and len(stages) == 4
    for step, (lr, block_lr, _) in enumerate(calls):
        stage = next(s for s in stages if s.start_step <= step < s.end_step)
        assert lr == pytest.approx(lr_at(step, plain) * 0.5 ** (stage.index - 1))
        assert block_lr == pytest.approx(lr * (4 / stage.depth) ** 0.5)
    for r in _metrics(tmp_path / "run"):
        stage = next(s for s in stages if s.start_step < r["step"] <= s.end_step)
        assert r["lr"] == pytest.approx(lr_at(r["step"] - 1, plain) * 0.5 ** (stage.index - 1))
    # a fixed-depth baseline is unchanged by depth_lr_exponent (factor 1 at the target depth): identical losses
    train(tiny_cfg(train__steps=4, eval__every=0), tmp_path / "a", console=QUIET)
    train(tiny_cfg(train__steps=4, eval__every=0, growth__depth_lr_exponent=0.5), tmp_path / "b", console=QUIET)
    assert [r["train_loss"] for r in _metrics(tmp_path / "a")] == [r["train_loss"] for r in _metrics(tmp_path / "b")]
