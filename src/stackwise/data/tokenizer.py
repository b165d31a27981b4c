"""Byte-level BPE with Hugging Face `tokenizers`: trained on the training split and cached, or loaded from a file.

The tokenizer round-trips any text exactly (byte level, no normalisation, no prefix space added), so a model sees
the same characters a person reads, leading spaces and newlines included.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from stackwise.errors import UserError

EOS = "<|endoftext|>"
PIECE_CHARS = 16_384
# A cut between a non-space character and a single space or newline followed by a non-space character ("word| word",
# "line|\nline"): no pre-token of the byte-level (GPT-2) pattern spans it or looks across it, so the text's tokens are
# exactly the tokens of its pieces.
_SAFE_CUT = re.compile(r"\S(?=[ \n]\S)")
# data.split_names: the leading space (Ġ at the byte level) of a pre-token that is one ASCII letter after it
NAME_SPACE = "^Ġ(?=[A-Za-z]$)"


def pieces(text: str, max_chars: int = PIECE_CHARS) -> Iterator[str]:
    """Split text into pieces of at most max_chars characters, each ending at the last safe cut before the limit.

    Normal text has a safe cut every few characters, so its tokens do not change at all (tested). A stretch of
    max_chars characters without one (a huge run with no single spaces or newlines: minified data, base64, a
    pathological file) is cut hard at the limit, which may change the tokens next to that cut; this bounds the
    memory and time of BPE training and encoding whatever the input."""
    return stream_pieces([text], max_chars)


def stream_pieces(chunks: Iterable[str], max_chars: int = PIECE_CHARS) -> Iterator[str]:
    """`pieces` of the concatenated chunks (e.g. a file read a megabyte at a time), never holding more than one chunk
    plus one piece: the pieces are exactly those of the whole text."""
    buf, start = "", 0
    for chunk in chunks:
        buf, start = buf[start:] + chunk, 0
        while len(buf) - start >= max_chars + 2:  # enough text to see past the limit
            cut = _cut(buf, start, start + max_chars)
            yield buf[start:cut]
            start = cut
    while len(buf) - start > max_chars:
        cut = _cut(buf, start, start + max_chars)
        yield buf[start:cut]
        start = cut
    yield buf[start:]


def _cut(text: str, start: int, end: int) -> int:
    """The last safe cut in (start, end], or end if there is none."""
    lo, step = end, 256
    while lo > start:  # look back from the limit, in growing windows
        lo, step = max(start, lo - step), 2 * step
        cut = None
        for m in _SAFE_CUT.finditer(text, lo, end + 2):  # (a match at i needs text[i + 1], text[i + 2])
            cut = m.start() + 1
        if cut is not None:
            return cut
    return end


def train_bpe(texts: Iterable[str], vocab_size: int, split_digits: bool = False,
              split_names: bool = False) -> Tokenizer:
    """A byte-level BPE trained on the texts, cut into bounded pieces (see `pieces`), so its time and memory stay
    bounded however pathological the text. (data.prepare passes it a bounded sample: sources.sample.)

    split_digits: every digit is its own pre-token, as in LLaMA's and DeepSeek's tokenizers, so a number is spelled
    by the same digit tokens wherever it stands (" 457" is `Ġ 4 5 7`, "457" is `4 5 7`); without it the merges
    depend on the context (`Ġ45 7` against `4 57`) and a model must learn that the two spell one value before it
    can copy or look one up.

    split_names: a word of one ASCII letter keeps its leading space apart (" x" is `Ġ x`), so a one-letter name is
    the same token wherever it stands: bound at a line's start (`x=457`), aliased after `=` (`y=x`) or asked after a
    space (`the value of x?`). Without it ` x` and `x` are two tokens that a model must first learn to match, and the
    reasoning recipe's model does not within its budget (docs/results/reasoning). Longer words are untouched (it
    costs about 1% more tokens on prose)."""
    tok = Tokenizer(models.BPE())
    steps = [pre_tokenizers.ByteLevel(add_prefix_space=False)]
    if split_names:
        steps.append(pre_tokenizers.Split(Regex(NAME_SPACE), "isolated"))
    if split_digits:
        steps.append(pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps) if len(steps) > 1 else steps[0]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((p for text in texts for p in pieces(text)), trainer=trainer)
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
