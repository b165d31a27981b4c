import pytest
import torch

from stackwise import sophia
from stackwise.config import load
from stackwise.model import Transformer
from stackwise.optim import build_optimizer, lr_at

SMALL = {"model.n_layers": 2, "model.d_model": 32, "model.n_heads": 2, "model.vocab_size": 64}


def test_schedule_warmup_then_cosine_to_floor():
    cfg = load(None, {"train.steps": 110, "train.warmup_steps": 10, "train.lr": 1.0, "train.lr_min_ratio": 0.1})
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(59, cfg) == pytest.approx(0.55, abs=0.01)
    assert lr_at(109, cfg) == pytest.approx(0.1)
    values = [lr_at(s, cfg) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_wsd_schedule_holds_the_peak_then_decays_linearly_to_the_floor():
    cfg = load(None, {"train.steps": 110, "train.warmup_steps": 10, "train.lr": 1.0, "train.lr_min_ratio": 0.1,
                      "train.schedule": "wsd", "train.decay_frac": 0.2})
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert all(lr_at(s, cfg) == 1.0 for s in range(10, 88))  # stable: the peak through step 87
    assert lr_at(98, cfg) == pytest.approx(1.0 - 0.9 * 11 / 22)  # then linear over 22 steps to the floor at 109
    assert lr_at(109, cfg) == pytest.approx(0.1)
    values = [lr_at(s, cfg) for s in range(88, 110)]
    assert all(a > b for a, b in zip(values, values[1:]))
    # a decay longer than the steps after warmup starts at the warmup's end
    long = load(None, {"train.steps": 20, "train.warmup_steps": 10, "train.lr": 1.0, "train.schedule": "wsd",
                       "train.decay_frac": 0.9})
    assert lr_at(10, long) == pytest.approx(1.0) and lr_at(19, long) == pytest.approx(0.1)


@pytest.mark.parametrize("name", ["adamw", "adafactor", "sophia", "muon", "soap", "shampoo", "psgd"])
def test_every_parameter_is_optimized_once_and_moves(name):
    cfg = load(None, {**SMALL, "optim.name": name})
    torch.manual_seed(0)
    model = Transformer(cfg.model)
    opt = build_optimizer(model, cfg)
    in_opt = [p for g in opt.param_groups for p in g["params"]]
    assert len(in_opt) == len({id(p) for p in in_opt}) == len(list(model.parameters()))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randint(0, 64, (2, 8))
    for _ in range(2 if name == "soap" else 1):  # SOAP's first step only sets up its preconditioners
        model(x, x).backward()
        opt.step(sophia.estimate(opt.optimizers[0], x.numel()) if opt.hessian_due() else None)  # (any estimate)
        opt.zero_grad()
    for n, p in model.named_parameters():
        assert not torch.equal(before[n], p), n
    if name in ("soap", "shampoo", "psgd"):  # the second-order method takes the hidden matrices, AdamW the rest
        hidden = {id(p) for n, p in model.named_parameters() if n.startswith("layers.") and p.ndim == 2}
        assert {id(p) for g in opt.optimizers[0].param_groups for p in g["params"]} == hidden
        assert isinstance(opt.optimizers[1], torch.optim.AdamW)
    state = opt.state_dict()
    opt.load_state_dict(state)


def test_muon_takes_hidden_matrices_and_adamw_the_rest():
    cfg = load(None, {**SMALL, "optim.name": "muon"})
    model = Transformer(cfg.model)
    opt = build_optimizer(model, cfg)
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    muon_params = {id(p) for g in muon.param_groups for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[i].startswith("layers.") and "layernorm" not in names[i] for i in muon_params)
    assert id(model.embed_tokens.weight) not in muon_params
    assert len(muon_params) == 7 * 2  # q, k, v, o, gate, up, down per layer


def test_norm_gains_are_not_decayed():
    cfg = load(None, SMALL)
    model = Transformer(cfg.model)
    opt = build_optimizer(model, cfg)
    for g in opt.param_groups:
        for p in g["params"]:
            assert (g["weight_decay"] > 0) == (p.ndim >= 2)


def test_lr_drop_multiplies_the_schedule_after_each_growth_event():
    cfg = load(None, {"train.steps": 110, "train.warmup_steps": 10, "train.lr": 1.0, "growth.lr_drop": 0.5})
    plain = load(None, {"train.steps": 110, "train.warmup_steps": 10, "train.lr": 1.0})
    for step in (0, 15, 60, 109):
        for index in (1, 2, 3):
            assert lr_at(step, cfg, 5, index) == pytest.approx(lr_at(step, plain) * 0.5 ** (index - 1))
    # with re-warmup too: the ramp rises to the dropped schedule
    both = load(None, {"train.steps": 110, "train.warmup_steps": 10, "train.lr": 1.0, "growth.lr_drop": 0.5,
                       "growth.rewarmup_steps": 4})
    assert lr_at(50, both, 50, 2) == pytest.approx(lr_at(50, plain) * 0.5 / 4)
    assert lr_at(53, both, 50, 2) == pytest.approx(lr_at(53, plain) * 0.5)


@pytest.mark.parametrize("name", ["adamw", "adafactor", "muon"])
def test_depth_lr_exponent_gives_the_blocks_their_own_lr(name):
    from stackwise.optim import depth_lr_factor, set_lr

    cfg = load(None, {**SMALL, "model.n_layers": 4, "optim.name": name, "growth.depth_lr_exponent": 0.5})
    model = Transformer(load(None, {**SMALL, "model.n_layers": 1}).model)  # the first stage of a 4-layer target
    assert depth_lr_factor(cfg, 1) == pytest.approx(2.0) and depth_lr_factor(cfg, 4) == 1.0
    opt = build_optimizer(model, cfg)
    set_lr(opt, 0.1, 0.1 * depth_lr_factor(cfg, 1))
    blocks = {id(p) for n, p in model.named_parameters() if n.startswith("layers.")}
    for group in opt.param_groups:
        assert all((id(p) in blocks) == group["blocks"] for p in group["params"])
        assert group["lr"] == pytest.approx(0.2 if group["blocks"] else 0.1)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
    # off (the default): the groups are those older checkpoints hold, untagged, and all take the one LR
    off = build_optimizer(model, load(None, {**SMALL, "optim.name": name}))
    set_lr(off, 0.1, 0.3)
    assert all("blocks" not in g and g["lr"] == 0.1 for g in off.param_groups)


def test_sophia_on_fsdp_shards_is_refused_in_one_line():
    from stackwise.errors import UserError

    load(None, {**SMALL, "optim.name": "sophia"})
    with pytest.raises(UserError, match=r"^optim.name: sophia is not supported on FSDP shards"):
        load(None, {**SMALL, "optim.name": "sophia", "train.parallel": "fsdp"})


def test_sophia_steps_are_the_official_sophia_g_update(monkeypatch):
    """θ ← (1 − ηλ)θ − η·clip(m / (ρ·B·h + ε), 1) with h the EMA of ĝ⊙ĝ, ĝ the gradient of the loss on labels sampled
    from the model (refreshed every k steps, here k = 2), computed by hand beside the train step."""
    import contextlib

    import torch.nn.functional as F

    from stackwise import sophia
    from stackwise.train import train_step

    monkeypatch.setattr(sophia, "EVERY", 2)
    cfg = load(None, {**SMALL, "optim.name": "sophia", "train.grad_clip": 0, "train.lr": 0.01,
                      "train.weight_decay": 0.1, "train.seed": 3})
    torch.manual_seed(0)
    model = Transformer(cfg.model)
    opt = build_optimizer(model, cfg)
    b1, b2 = sophia.BETAS
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)]: g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay["embed_tokens.weight"] == 0.1 and decay["norm.weight"] == 0.0 and len(decay) == len(names)
    m = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    h = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    for step in range(4):
        x = torch.randint(0, 64, (4, 8), generator=gen)
        y = torch.randint(0, 64, (4, 8), generator=gen)
        theta = {n: p.detach().clone() for n, p in model.named_parameters()}
        if step % 2 == 0:  # the estimate, by hand: labels drawn from the model's softmax with the step's generator
            rngs = [torch.Generator().manual_seed((3 * 1_000_003 + step) * 1_000_033 + b) for b in range(4)]  # per row
            labels = torch.cat([torch.multinomial(F.softmax(model(x[b:b + 1])[0], -1), 1, generator=g).squeeze(1)
                                for b, g in enumerate(rngs)])
            grads = torch.autograd.grad(F.cross_entropy(model(x).reshape(-1, 64), labels), list(model.parameters()))
            for (n, _), g in zip(model.named_parameters(), grads):
                h[n] = b2 * h[n] + (1 - b2) * sophia.RHO * x.numel() * g.square()
        grads = torch.autograd.grad(model(x, y), list(model.parameters()))
        assert opt.hessian_due() == (step % 2 == 0)
        train_step(model, model, opt, (x, y), cfg, torch.device("cpu"), contextlib.nullcontext)
        for (n, p), g in zip(model.named_parameters(), grads):
            m[n] = b1 * m[n] + (1 - b1) * g
            want = theta[n] * (1 - 0.01 * decay[n]) - 0.01 * (m[n] / h[n].clamp(min=1e-12)).clamp(-1, 1)
            torch.testing.assert_close(p.detach(), want, rtol=0, atol=1e-5)  # (lr: 1e-2)
    with pytest.raises(AssertionError, match="Hessian estimate is due"):
        opt.step()  # step 5 needs an estimate, and a plain step() cannot make one


def test_sophia_estimate_is_the_same_over_any_number_of_micro_batches():
    """Labels are drawn per row of the global batch, so 1 or 2 micro-batches (or ranks) give the same step."""
    import contextlib

    from stackwise.train import train_step

    x = torch.randint(0, 64, (4, 8), generator=torch.Generator().manual_seed(0))
    after = []
    for accum in (1, 2):
        cfg = load(None, {**SMALL, "optim.name": "sophia", "train.grad_accum": accum, "train.batch_size": 4})
        torch.manual_seed(0)
        model = Transformer(cfg.model)
        opt = build_optimizer(model, cfg)
        train_step(model, model, opt, (x, x.roll(1, 1)), cfg, torch.device("cpu"), contextlib.nullcontext)
        after.append((model, {n: opt.optimizers[0].state[p]["hessian"] for n, p in model.named_parameters()}))
    (one, h1), (two, h2) = after
    for n in h1:
        torch.testing.assert_close(h2[n], h1[n], rtol=1e-4, atol=1e-9)
    for p, q in zip(one.parameters(), two.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-6)
