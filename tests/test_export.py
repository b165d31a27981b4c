"""Hugging Face export: transformers loads the folder as Llama and computes our logits."""

import pytest
import torch
from rich.console import Console

from stackwise.cli import main
from stackwise.evals import runner
from stackwise.train import train

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("tie", [True, False])
def test_export_after_growth_matches_our_logits(tiny_cfg, tmp_path, tie):
    run = tmp_path / "run"
    cfg = tiny_cfg(model__n_layers=3, model__n_heads=4, model__n_kv_heads=2, model__tie_embeddings=tie,
                   growth__method="midas", growth__block_size=1, train__steps=9, checkpoint__every=9)
    train(cfg, run, console=Console(quiet=True))
    out = tmp_path / "hf"
    assert main(["export", str(run), "--out", str(out)]) == 0
    (_, _, ours), = runner.models(run, "final")
    assert ours.depth == 3
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert type(theirs).__name__ == "LlamaForCausalLM" and theirs.config.num_hidden_layers == 3
    x = torch.randint(0, cfg.model.vocab_size, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(theirs(x).logits, ours(x), rtol=0, atol=1e-4)
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    text = "the cat sat on the mat.\n  and ran"
    assert tok.decode(tok(text)["input_ids"]) == text
