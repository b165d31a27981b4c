import numpy as np
import pytest
import torch

from stackwise import checkpoint
from stackwise.config import load
from stackwise.errors import UserError
from stackwise.model import Transformer
from stackwise.optim import build_optimizer

SMALL = {"model.n_layers": 2, "model.d_model": 32, "model.n_heads": 2, "model.vocab_size": 64}


def _trained():
    cfg = load(None, SMALL)
    torch.manual_seed(0)
    model = Transformer(cfg.model)
    opt = build_optimizer(model, cfg)
    x = torch.randint(0, 64, (2, 8))
    model(x, x).backward()
    opt.step()
    return cfg, model, opt


def _trainer_state(step):
    return {"step": step, "tokens": 10, "flops": 20, "wall_s": 1.5, "depth": 2,
            "window": {"loss": 0.0, "steps": 0, "wall_s": 0.0}, "loader": {"position": step, "seed": 0}}


def test_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    cfg, model, opt = _trained()
    torch.manual_seed(123)
    np.random.seed(7)  # numpy's global RNG too (PSGD-Kron draws from it)
    path = checkpoint.save(tmp_path / "checkpoints", 5, model, opt, _trainer_state(5), cfg)
    expected_draw, expected_np = torch.rand(3), np.random.random(3)
    assert not list((tmp_path / "checkpoints").glob(".tmp*"))
    loaded = checkpoint.read(path)
    assert loaded.cfg == cfg and loaded.trainer["loader"]["position"] == 5
    fresh = Transformer(loaded.cfg.model, n_layers=loaded.trainer["depth"])
    checkpoint.load_weights(fresh, path)
    for (n, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), n
    assert fresh.lm_head.weight is fresh.embed_tokens.weight  # tying survives
    opt2 = build_optimizer(fresh, cfg)
    opt2.load_state_dict(loaded.optimizer)
    s1, s2 = opt.state_dict()["optimizers"][0]["state"], opt2.state_dict()["optimizers"][0]["state"]
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)
    checkpoint.set_rng_state(loaded.trainer["rng"])
    assert torch.equal(torch.rand(3), expected_draw) and np.array_equal(np.random.random(3), expected_np)
    for name in ("optimizer.pt", "trainer.pt"):  # no pickled code: safe loading works
        torch.load(path / name, weights_only=True)


def test_keep_newest_and_skip_damaged(tmp_path):
    cfg, model, opt = _trained()
    ckpts = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        checkpoint.save(ckpts, step, model, opt, _trainer_state(step), cfg, keep=2)
    assert [p.name for p in checkpoint.list_checkpoints(ckpts)] == ["step_0000002", "step_0000003"]
    (ckpts / ".tmp-step_0000004").mkdir()  # an interrupted write is never picked
    (ckpts / "step_0000003" / "trainer.pt").write_bytes(b"corrupt")
    messages = []
    assert checkpoint.latest(tmp_path, warn=messages.append).trainer["step"] == 2
    assert "step_0000003" in messages[0]
    (ckpts / "step_0000002" / "optimizer.pt").unlink()
    with pytest.raises(UserError, match="no readable checkpoint"):
        checkpoint.latest(tmp_path, warn=messages.append)


def test_no_checkpoint_and_mismatched_weights(tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        checkpoint.latest(tmp_path)
    cfg, model, opt = _trained()
    path = checkpoint.save(tmp_path / "checkpoints", 1, model, opt, _trainer_state(1), cfg)
    with pytest.raises(UserError, match="weights do not match"):
        checkpoint.load_weights(Transformer(cfg.model, n_layers=3), path)
