import pytest
import yaml

from stackwise import config as config_mod
from stackwise.errors import UserError


def test_defaults_recipe_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: {steps: 7, lr: 1.0e-3}\nmodel: {tie_embeddings: false}\n")
    cfg = config_mod.load(recipe, {"train.steps": "9", "model.n_kv_heads": "2", "train.compile": "true"})
    assert cfg.train.steps == 9 and isinstance(cfg.train.steps, int)
    assert cfg.train.lr == 1e-3
    assert cfg.model.tie_embeddings is False
    assert cfg.model.n_kv_heads == 2
    assert cfg.train.compile is True
    assert cfg.model.d_model == config_mod.ModelConfig().d_model


def test_yaml_round_trip(tmp_path):
    cfg = config_mod.load(None, {"train.seed": 3, "data.tokenizer": "x.json", "model.d_ff": 100})
    config_mod.save(cfg, tmp_path / "c.yaml")
    assert config_mod.load(tmp_path / "c.yaml") == cfg


def test_bundled_recipes_load():
    for name in ("default", "tiny"):
        config_mod.load(name)


@pytest.mark.parametrize("overrides, field", [
    ({"train.steps": -1}, "train.steps"),
    ({"train.steps": 0}, "train.steps"),
    ({"model.n_heads": 5}, "model.n_heads"),
    ({"model.n_heads": 4, "model.n_kv_heads": 3}, "model.n_kv_heads"),
    ({"growth.method": "bogus"}, "growth.method"),
    ({"optim.name": "sgdx"}, "optim.name"),
    ({"train.dtype": "fp8"}, "train.dtype"),
    ({"train.lr": 0}, "train.lr"),
    ({"train.lr_min_ratio": 2}, "train.lr_min_ratio"),
    ({"train.grad_accum": 3}, "train.grad_accum"),
    ({"train.steps": "many"}, "train.steps"),
    ({"train.steps": 1.5}, "train.steps"),
    ({"train.compile": "maybe"}, "train.compile"),
    ({"checkpoint.keep": 0}, "checkpoint.keep"),
    ({"train.parallel": "fsdp", "optim.name": "muon"}, "optim.name"),
    ({"train.parallel": "fsdp", "optim.name": "adafactor"}, "optim.name"),
    ({"train.parallel": "tp"}, "train.parallel"),
    ({"train.stesp": 3}, "train.stesp"),
    ({"trian.steps": 3}, "trian.steps"),
])
def test_invalid_values_name_the_field(overrides, field):
    with pytest.raises(UserError) as e:
        config_mod.load(None, overrides)
    msg = str(e.value)
    assert field in msg and "\n" not in msg


def test_yaml_typo_names_file_and_field(tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("train:\n  setps: 100\n")
    with pytest.raises(UserError, match=r"typo\.yaml: unknown config field 'train\.setps'"):
        config_mod.load(recipe)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        config_mod.load(bad)
    with pytest.raises(UserError, match="config file not found: nope.yaml"):
        config_mod.load("nope.yaml")
    flat = tmp_path / "flat.yaml"
    flat.write_text("steps: 3\n")
    with pytest.raises(UserError, match="section 'steps' must be a mapping"):
        config_mod.load(flat)


def test_a_saved_config_from_before_a_field_existed_keeps_the_older_behaviour(tmp_path):
    from stackwise.config import Config, from_dict, load

    tree = Config().to_dict()
    del tree["data"]["tokenizer_sample_mb"]  # written before BPE trained on a sample: it trained on everything
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert load(path, saved=True).data.tokenizer_sample_mb is None
    assert from_dict(tree).data.tokenizer_sample_mb is None
    assert load(path).data.tokenizer_sample_mb == 16.0  # as a recipe, today's default
