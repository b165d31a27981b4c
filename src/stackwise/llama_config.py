"""What a Hugging Face Llama-family config.json says, in stackwise's model terms (torch-free: the config reads it to
resolve init.from; hf_import loads the weights). The rules of what is supported are hf_import's docstring."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stackwise.errors import UserError

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"{folder}: no config.json (not a Hugging Face model folder)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def model_fields(hf: dict, where: str) -> dict[str, Any]:
    """Our model.* fields for the checkpoint (n_layers = its depth), or a one-line refusal naming the field."""
    arch = (hf.get("architectures") or ["?"])[0]
    if arch not in ARCHITECTURES:
        why = " (its attention projections have biases, which stackwise's model does not have)" \
            if arch.startswith("Qwen2") else ""
        raise UserError(f"{where}: architectures {arch} is not supported{why}; stackwise loads "
                        f"{' and '.join(ARCHITECTURES)}")

    def refuse(field: str, value, expected: str):
        raise UserError(f"{where}: {field} = {value!r} is not supported (stackwise's model needs {expected})")

    if hf.get("hidden_act", "silu") != "silu":
        refuse("hidden_act", hf["hidden_act"], "silu")
    for field in ("attention_bias", "mlp_bias"):
        if hf.get(field):
            refuse(field, hf[field], "no biases")
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    kind = rope.get("rope_type", "default") if rope else (scaling.get("rope_type") or scaling.get("type") or "default")
    if kind != "default":
        refuse("rope_parameters.rope_type" if rope else "rope_scaling", kind, "plain RoPE (rope_type default)")
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d // heads):
        refuse("head_dim", hf["head_dim"], f"hidden_size / num_attention_heads = {d // heads}")
    window = hf.get("sliding_window")
    if arch == "MistralForCausalLM" and window is not None and window < hf.get("max_position_embeddings", 0):
        refuse("sliding_window", window, f"no sliding window, or one of at least max_position_embeddings "
                                         f"({hf.get('max_position_embeddings')})")
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    return {"n_layers": hf["num_hidden_layers"], "d_model": d, "n_heads": heads,
            "n_kv_heads": hf.get("num_key_value_heads") or heads, "d_ff": hf["intermediate_size"],
            "vocab_size": hf["vocab_size"], "rope_theta": float(theta), "norm_eps": float(hf.get("rms_norm_eps", 1e-6)),
            "tie_embeddings": bool(hf.get("tie_word_embeddings", False))}
