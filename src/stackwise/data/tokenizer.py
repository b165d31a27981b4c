"""Byte-level BPE with Hugging Face `tokenizers`: trained on the training split and cached, or loaded from a file.

The tokenizer round-trips any text exactly (byte level, no normalisation, no prefix space added), so a model sees
the same characters a person reads, leading spaces and newlines included.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from stackwise.errors import UserError

EOS = "<|endoftext|>"


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load(path: str | Path) -> Tokenizer:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"data.tokenizer: file not found: {path}")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise UserError(f"data.tokenizer: {path} is not a valid tokenizer.json ({e})") from None


def eos_id(tok: Tokenizer) -> int:
    """The end-of-text id placed between documents; falls back to common names in foreign tokenizers."""
    for name in (EOS, "</s>", "<eos>", "<|end_of_text|>"):
        i = tok.token_to_id(name)
        if i is not None:
            return i
    raise UserError("data.tokenizer: no end-of-text token (<|endoftext|>, </s> or <eos>) in the tokenizer")
