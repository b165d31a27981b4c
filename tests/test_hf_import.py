"""Hugging Face Llama-family checkpoints into stackwise (logits equal transformers'), refusals in one line, and
`stackwise grow` offline (identity keeps the function; transformers loads the result)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from stackwise import hf_import
from stackwise.cli import main
from stackwise.data import tokenizer as tokenizer_mod
from stackwise.errors import UserError

transformers = pytest.importorskip("transformers")

VOCAB = 300


@pytest.fixture(scope="module")
def tok_file(tmp_path_factory):
    rng = random.Random(0)
    text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "x", "=", "1", "2", "\n"]) for _ in range(3000))
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tokenizer_mod.train_bpe([text], VOCAB).save(str(path))
    return path


def _save(model, folder, tok_file, shard: str | None = None):
    model.save_pretrained(folder, **({"max_shard_size": shard} if shard else {}))
    (folder / "tokenizer.json").write_bytes(tok_file.read_bytes())
    return folder


def _llama(**overrides):
    torch.manual_seed(0)
    kw = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False, rope_theta=5000.0,
              rms_norm_eps=1e-6)
    kw.update(overrides)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**kw)).eval()


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits if hasattr(model(ids), "logits") else model(ids)


def test_a_sharded_untied_gqa_llama_loads_with_equal_logits(tmp_path, tok_file):
    theirs = _llama()
    folder = _save(theirs, tmp_path / "llama", tok_file, shard="20KB")
    assert (folder / "model.safetensors.index.json").is_file()
    ours, tok, hf = hf_import.load_llama(folder)
    assert (ours.depth, ours.cfg.n_kv_heads, ours.cfg.d_ff, ours.cfg.rope_theta, ours.cfg.norm_eps) == (
        2, 2, 48, 5000.0, 1e-6) and not ours.cfg.tie_embeddings and 256 < tok.get_vocab_size() <= VOCAB
    ids = torch.randint(0, VOCAB, (2, 20))
    with torch.no_grad():
        assert torch.allclose(ours(ids), theirs(ids).logits, atol=1e-5)


def test_a_tied_mistral_without_a_binding_window_loads(tmp_path, tok_file):
    torch.manual_seed(1)
    cfg = transformers.MistralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                     num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                                     tie_word_embeddings=True, sliding_window=None)
    theirs = transformers.MistralForCausalLM(cfg).eval()
    ours, _, _ = hf_import.load_llama(_save(theirs, tmp_path / "mistral", tok_file))
    ids = torch.randint(0, VOCAB, (1, 16))
    with torch.no_grad():
        assert ours.cfg.tie_embeddings and torch.allclose(ours(ids), theirs(ids).logits, atol=1e-5)


@pytest.mark.parametrize("change, message", [
    ({"architectures": ["Qwen2ForCausalLM"]}, "architectures Qwen2ForCausalLM is not supported (its attention"),
    ({"architectures": ["GPT2LMHeadModel"]}, "architectures GPT2LMHeadModel is not supported"),
    ({"rope_parameters": {"rope_theta": 10000.0, "rope_type": "linear", "factor": 2.0}},
     "rope_parameters.rope_type = 'linear' is not supported"),
    ({"rope_parameters": None, "rope_scaling": {"type": "dynamic", "factor": 2.0}}, "rope_scaling = 'dynamic'"),
    ({"attention_bias": True}, "attention_bias = True is not supported"),
    ({"hidden_act": "gelu"}, "hidden_act = 'gelu'"),
    ({"head_dim": 16}, "head_dim = 16"),
    ({"architectures": ["MistralForCausalLM"], "sliding_window": 16}, "sliding_window = 16"),
])
def test_what_the_model_cannot_represent_is_refused_in_one_line(tmp_path, tok_file, change, message):
    folder = _save(_llama(), tmp_path / "m", tok_file)
    spec = json.loads((folder / "config.json").read_text())
    spec.update(change)
    (folder / "config.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match="^" + str(folder).replace("+", r"\+")) as err:
        hf_import.load_llama(folder)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_or_foreign_files_are_refused(tmp_path, tok_file):
    folder = _save(_llama(), tmp_path / "m", tok_file)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(UserError, match="only pickle weights"):
        hf_import.load_llama(folder)
    folder = _save(_llama(), tmp_path / "n", tok_file)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="no tokenizer.json"):
        hf_import.load_llama(folder)
    folder = _save(_llama(attention_bias=True), tmp_path / "b", tok_file)
    spec = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**spec, "attention_bias": False}))  # a config that lies
    with pytest.raises(UserError, match="unexpected tensor layers.0.self_attn"):
        hf_import.load_llama(folder)


def test_grow_offline_identity_keeps_the_logits_and_transformers_loads_it(tmp_path, tok_file, capsys):
    theirs = _llama(num_hidden_layers=3)
    src = _save(theirs, tmp_path / "src", tok_file)
    ids = torch.randint(0, VOCAB, (2, 12))
    assert main(["grow", str(src), "--method", "midas", "--to", "5", "--init", "identity", "--out",
                 str(tmp_path / "deep")]) == 0
    deep = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "deep").eval()
    assert deep.config.num_hidden_layers == 5 and (tmp_path / "deep" / "manifest.json").is_file()
    with torch.no_grad():
        assert torch.allclose(deep(ids).logits, theirs(ids).logits, atol=1e-5)
    # copy init (stacking as published) changes the function; in two blocks of one layer
    assert main(["grow", str(src), "--method", "gradstack", "--to", "5", "--block-size", "1", "--init", "copy",
                 "--out", str(tmp_path / "copy")]) == 0
    grown, _, _ = hf_import.load_llama(tmp_path / "copy")
    assert grown.depth == 5 and torch.equal(grown.layers[4].mlp.down_proj.weight, grown.layers[2].mlp.down_proj.weight)
    capsys.readouterr()
    assert main(["grow", str(src), "--to", "6", "--block-size", "2", "--out", str(tmp_path / "x")]) == 2
    assert "--block-size: 2 does not divide the 3 layers to add" in capsys.readouterr().err
    assert main(["grow", str(src), "--to", "3", "--out", str(tmp_path / "y")]) == 2
    assert main(["grow", str(src), "--to", "5", "--out", str(tmp_path / "deep")]) == 2  # exists
    assert hf_import.growth_maps("progressive", 3, 12, None) == [[0, 1, 2, 0, 1, 2], [*range(6), *range(6)]]


def test_grow_and_continue_pretraining_a_checkpoint_then_transformers_loads_it(corpus, tmp_path, capsys):
    """The round trip: a Llama made by transformers -> stackwise train --init.from (MIDAS from its 2 layers to 3,
    identity init) on our text -> final/ -> transformers loads it, and its held-out loss fell."""
    tok = tokenizer_mod.train_bpe([corpus["train"].read_text()], VOCAB)
    tok_file = tmp_path / "tokenizer.json"
    tok.save(str(tok_file))
    theirs = _llama(num_hidden_layers=2, tie_word_embeddings=True)
    src = _save(theirs, tmp_path / "src", tok_file)
    held_out = torch.tensor([tok.encode(corpus["val"].read_text()[:2000]).ids[:129]])

    def loss(model) -> float:
        with torch.no_grad():
            return float(model(held_out[:, :-1], labels=held_out[:, :-1]).loss)

    flags = ["--init.from", str(src), "--data.train", str(corpus["train"]), "--data.val", str(corpus["val"]),
             "--train.steps", "30", "--train.batch_size", "8", "--train.seq_len", "32", "--train.lr", "3e-3",
             "--train.warmup_steps", "3", "--eval.every", "0", "--eval.sample_tokens", "0"]
    run = tmp_path / "run"
    assert main(["train", *flags, "--growth.method", "midas", "--model.n_layers", "3", "--growth.block_size", "1",
                 "--growth.init", "identity", "--out", str(run)]) == 0
    result = json.loads((run / "result.json").read_text())
    assert [s["depth"] for s in result["stages"]] == [2, 3]  # the plan starts at the checkpoint's depth
    saved = (run / "config.yaml").read_text()
    assert "checkpoint: " + str(src) in saved and "tokenizer: " + str(src / "tokenizer.json") in saved
    grown = transformers.AutoModelForCausalLM.from_pretrained(run / "final").eval()
    assert grown.config.num_hidden_layers == 3 and loss(grown) < loss(theirs) - 0.1
    # training starts from the checkpoint's weights: at a negligible LR the exported model is the checkpoint
    assert main(["train", *flags, "--train.steps", "2", "--train.warmup_steps", "1", "--train.lr", "1e-9",
                 "--growth.method", "none", "--out", str(tmp_path / "still")]) == 0  # (later flags win)
    still = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "still" / "final").eval()
    with torch.no_grad():
        assert torch.allclose(still(held_out).logits, theirs(held_out).logits, atol=1e-4)
    # an explicit value the checkpoint contradicts is refused before anything runs, in one line
    capsys.readouterr()
    assert main(["train", *flags, "--model.d_model", "64", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "model.d_model: 64 conflicts with the checkpoint's 32" in err and not (tmp_path / "bad").exists()
    # even when the value given is the default's (a flag is explicit; a recipe's values yield to the checkpoint)
    assert main(["train", *flags, "--model.d_model", "256", "--out", str(tmp_path / "bad")]) == 2
    assert "model.d_model: 256 conflicts with the checkpoint's 32" in capsys.readouterr().err
    assert main(["plan", "--init.from", str(src), "--growth.method", "midas", "--model.n_layers", "4",
                 "--growth.block_size", "1", "--json"]) == 0
    assert [s["depth"] for s in json.loads(capsys.readouterr().out)["stages"]] == [2, 3, 4]


def test_freeze_old_trains_only_the_grown_layers_and_resumes_identically(corpus, tmp_path):
    """growth.freeze_old (LLaMA Pro): from the first growth event on, the model's original layers, embeddings and
    head stay bit-for-bit as they were then; the grown layers train; a run resumed after a growth event freezes the
    same and logs the same losses."""
    from stackwise import checkpoint, growth
    from stackwise.config import load
    from stackwise.model import Transformer

    tok = tokenizer_mod.train_bpe([corpus["train"].read_text()], VOCAB)
    tok_file = tmp_path / "tokenizer.json"
    tok.save(str(tok_file))
    src = _save(_llama(num_hidden_layers=2, tie_word_embeddings=True), tmp_path / "src", tok_file)
    flags = ["--init.from", str(src), "--data.train", str(corpus["train"]), "--data.val", str(corpus["val"]),
             "--train.steps", "12", "--train.batch_size", "4", "--train.seq_len", "32", "--train.warmup_steps", "2",
             "--eval.every", "0", "--eval.sample_tokens", "0", "--growth.method", "midas", "--model.n_layers", "4",
             "--growth.block_size", "1", "--growth.freeze_old", "true", "--checkpoint.every", "3",
             "--checkpoint.keep", "10", "--train.log_every", "1"]
    run = tmp_path / "run"
    assert main(["train", *flags, "--out", str(run)]) == 0
    cfg = load(None, {f[2:]: v for f, v in zip(flags[::2], flags[1::2])})
    original = sorted(growth.original_positions(growth.plan(cfg))[-1])
    assert original == [0, 3]  # midas 2 -> 3 -> 4: the checkpoint's layers end up first and last
    at_growth = checkpoint.read(run / "checkpoints" / "step_0000002")  # the end of stage 1 (PROP-1: 2, 6, 12)
    before = Transformer(at_growth.cfg.model, n_layers=2)
    checkpoint.load_weights(before, at_growth.path)
    after, _, _ = hf_import.load_llama(run / "final")
    for new_i, old_i in zip(original, (0, 1), strict=True):
        for (name, a), b in zip(after.layers[new_i].state_dict().items(), before.layers[old_i].state_dict().values()):
            assert torch.equal(a, b), name
    assert torch.equal(after.embed_tokens.weight, before.embed_tokens.weight)
    assert torch.equal(after.norm.weight, before.norm.weight)
    assert not torch.equal(after.layers[1].mlp.down_proj.weight, before.layers[0].mlp.down_proj.weight)
    metrics = (run / "metrics.jsonl").read_text()
    checkpoint.rewind(run, 3)  # after the first growth event (step 2), before the second (step 6)
    assert main(["train", "--resume", str(run)]) == 0
    strip = [(json.loads(x)["step"], json.loads(x)["train_loss"]) for x in metrics.splitlines()]
    assert [(json.loads(x)["step"], json.loads(x)["train_loss"])
            for x in (run / "metrics.jsonl").read_text().splitlines()] == strip


def test_compare_puts_grow_and_continue_beside_continue_at_fixed_depth(tmp_path, tok_file):
    """`stackwise compare --init.from DIR --model.n_layers 4 --methods none,midas`: the fixed-depth arm continues the
    checkpoint at its own depth, the growth arm grows it from there to 4."""
    from stackwise import compare, growth

    folder = _save(_llama(num_hidden_layers=2), tmp_path / "ckpt", tok_file)
    common = {"init.from": str(folder), "model.n_layers": "4", "growth.block_size": "1", "train.steps": "30"}
    none, midas = compare.parse_methods("none,midas")
    assert [s.depth for s in growth.plan(compare.arm_config(None, none, common))] == [2]
    assert [s.depth for s in growth.plan(compare.arm_config(None, midas, common))] == [2, 3, 4]
    assert compare.arm_config(None, midas, common).model.d_model == 32
