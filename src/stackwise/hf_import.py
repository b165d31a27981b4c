"""Hugging Face Llama-family checkpoints into stackwise's model, and growing them offline (`stackwise grow`).

`load_llama(DIR)` reads a local folder (config.json, model.safetensors or a sharded model.safetensors.index.json,
tokenizer.json) of a `LlamaForCausalLM`, or a `MistralForCausalLM` whose sliding window never binds, into our
`Transformer` with the checkpoint's own width, heads (GQA included), FFN size, vocabulary, RoPE θ, norm ε and tied or
untied head. Everything else is refused with one line naming the field, never loaded into a wrong model:
  - Qwen2ForCausalLM and any other architecture: Qwen2's attention projections have biases, which our model (and
    its export, which transformers loads as Llama) does not have; supporting them would change the model file for
    one family, so it is refused;
  - RoPE scaling of any type but the default (linear, dynamic, yarn, llama3, ...), an activation other than SiLU,
    attention or MLP biases, a head_dim other than hidden_size / heads, a Mistral sliding window shorter than the
    context, and weights only in pickle files (pytorch_model.bin: reading them would run code from the file).
Logits equal transformers' own on the same input (tests/test_hf_import.py, with small random models that
transformers builds in the test).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from stackwise import operators
from stackwise.errors import UserError
from stackwise.llama_config import model_fields, read_config

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

    from stackwise.model import Transformer

IGNORED = ("rotary_emb.inv_freq",)  # buffers some older checkpoints carry; recomputed here


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of model.safetensors, or of the shards a model.safetensors.index.json names."""
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    elif any(folder.glob("*.bin")):
        raise UserError(f"{folder}: only pickle weights (*.bin), which stackwise does not read (unpickling can run "
                        "code); convert them to safetensors first")
    else:
        raise UserError(f"{folder}: no model.safetensors or model.safetensors.index.json")
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        if not (folder / name).is_file():
            raise UserError(f"{folder}: shard {name} named by the index is missing")
        tensors.update(load_file(str(folder / name)))
    return tensors


def load_llama(folder: str | Path) -> tuple[Transformer, Tokenizer, dict]:
    """(our model at the checkpoint's depth, in float32; its tokenizer; the checkpoint's config.json)."""
    from stackwise.config import ModelConfig
    from stackwise.data.tokenizer import load as load_tokenizer
    from stackwise.model import Transformer

    folder = Path(folder).expanduser()
    hf = read_config(folder)
    cfg = ModelConfig(**model_fields(hf, str(folder)))
    depth = cfg.n_layers
    if not (folder / "tokenizer.json").is_file():
        raise UserError(f"{folder}: no tokenizer.json (stackwise needs the checkpoint's fast tokenizer)")
    tok = load_tokenizer(folder / "tokenizer.json")
    state = {}
    for key, tensor in read_weights(folder).items():
        if key.endswith(IGNORED):
            continue
        state[key.removeprefix("model.")] = tensor.float()
    if cfg.tie_embeddings:
        state.pop("lm_head.weight", None)
        state["lm_head.weight"] = state.get("embed_tokens.weight")
    model = Transformer(cfg, n_layers=depth)
    expected = set(model.state_dict())
    unexpected, missing = sorted(set(state) - expected), sorted(expected - set(state))
    if unexpected or missing:
        name = (unexpected or missing)[0]
        raise UserError(f"{folder}: {'unexpected' if unexpected else 'missing'} tensor {name} "
                        f"({len(unexpected)} unexpected, {len(missing)} missing): not a plain {hf['architectures'][0]}")
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if v.shape != shapes[k]]
    if bad:
        raise UserError(f"{folder}: tensor {bad[0]} has shape {tuple(state[bad[0]].shape)}, config.json implies "
                        f"{tuple(shapes[bad[0]])}")
    model.load_state_dict(state, strict=True)
    return model, tok, hf


def growth_maps(method: str, depth: int, target: int, block: int | None) -> list[list[int]]:
    """The source maps of the growth events that take `depth` layers to `target` with a registered operator:
    blocks of `block` layers (default: target - depth, one event) or, for a doubling operator, doublings."""
    if method not in operators.OPERATORS:
        raise UserError(f"--method: unknown growth method '{method}' (choose from {', '.join(operators.OPERATORS)})")
    op = operators.OPERATORS[method]
    if target <= depth:
        raise UserError(f"--to: {target} is not deeper than the checkpoint's {depth} layers")
    maps, d = [], depth
    doubling = op.schedule is operators.doubling
    b = None if doubling else (block or target - depth)
    if b is not None and (target - depth) % b:
        raise UserError(f"--block-size: {b} does not divide the {target - depth} layers to add")
    while d < target:
        m = op.source_map(d, d if doubling else b)
        if len(m) > target:
            raise UserError(f"--to: {method} doubles {depth} layers, which never gives {target}")
        maps.append(m)
        d = len(m)
    return maps
