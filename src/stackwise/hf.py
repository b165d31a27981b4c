"""Hugging Face Llama compatibility: our parameter names are HF's minus the `model.` prefix.

`save_pretrained` writes a folder that `transformers.AutoModelForCausalLM.from_pretrained` loads as a
`LlamaForCausalLM`: config.json, model.safetensors and the tokenizer files. A model with Canon layers
(`model.canon`) has no Llama equivalent: its folder names the architecture `StackwiseCanonForCausalLM`, which
stackwise loads and `transformers` refuses by name (rather than loading a Llama without those layers).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from stackwise import config as config_mod
from stackwise.config import Config, ModelConfig
from stackwise.data.tokenizer import eos_id
from stackwise.model import Transformer, ffn_dim


def hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and model.cfg.tie_embeddings:
            continue  # HF re-ties it from embed_tokens on load
        key = name if name.startswith("lm_head.") else f"model.{name}"
        out[key] = tensor.detach().to("cpu", torch.float32).contiguous()
    return out


def hf_config(model: Transformer, max_positions: int, tok: Tokenizer | None) -> dict:
    c = model.cfg
    eos = eos_id(tok) if tok is not None else None
    canon = {"architectures": ["StackwiseCanonForCausalLM"], "model_type": "stackwise_canon", "canon": c.canon,
             "canon_kernel": c.canon_kernel} if c.canon else {}
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "intermediate_size": ffn_dim(c),
        "num_hidden_layers": model.depth,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads or c.n_heads,
        "head_dim": c.d_model // c.n_heads,
        "hidden_act": "silu",
        "max_position_embeddings": max_positions,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "tie_word_embeddings": c.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": eos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
        **canon,
    }


def load_pretrained(folder: Path, cfg: ModelConfig) -> Transformer:
    """Our model from a folder written by save_pretrained (its depth from config.json, width from `cfg`)."""
    depth = json.loads((folder / "config.json").read_text())["num_hidden_layers"]
    model = Transformer(cfg, n_layers=depth)
    tensors = load_file(str(folder / "model.safetensors"))
    state = {k.removeprefix("model."): v for k, v in tensors.items()}
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    model.load_state_dict(state, strict=True)
    return model


def export(model: Transformer, out: Path, cfg: Config, tok: Tokenizer | None) -> Path:
    """A sealed Hugging Face folder (complete or absent, with a manifest; checkpoint.write_folder): weights,
    config.json and tokenizer, plus the run's config as stackwise.yaml."""
    from stackwise import checkpoint

    def write(folder: Path) -> None:
        save_pretrained(model, folder, max_positions=cfg.train.seq_len, tok=tok)
        config_mod.save(cfg, folder / "stackwise.yaml")

    return checkpoint.write_folder(out, write)


def save_pretrained(model: Transformer, out: Path, max_positions: int, tok: Tokenizer | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_file(hf_state_dict(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf_config(model, max_positions, tok), indent=2) + "\n")
    if tok is not None:
        tok.save(str(out / "tokenizer.json"))
        eos = tok.id_to_token(eos_id(tok))
        (out / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": eos, "eos_token": eos, "unk_token": None,
            "model_max_length": max_positions, "add_bos_token": False, "add_eos_token": False,
        }, indent=2) + "\n")
