"""Data preparation: tokenizer (trained or given), token files (built once, cached), and loaders.

Caches live under `data.cache_dir`, keyed by a content hash of the text and the settings that shape the result, so
a changed corpus or vocab size rebuilds and an unchanged one is reused across runs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from stackwise.config import Config
from stackwise.data import sources, tokenizer, tokens
from stackwise.errors import UserError

TOKENIZER_VERSION = "bytelevel-bpe-1"


@dataclass
class Prepared:
    tokenizer: Tokenizer
    tokenizer_path: Path
    train: np.ndarray  # memory-mapped token ids
    val: np.ndarray


def _key(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _cache_dir(cfg: Config) -> Path:
    path = Path(os.environ.get("STACKWISE_CACHE", cfg.data.cache_dir)).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def tokenizer_for(cfg: Config, log=print) -> tuple[Tokenizer, Path]:
    """The user's tokenizer.json, or a BPE trained on the train split (cached by corpus hash + vocab size)."""
    if cfg.data.tokenizer:
        path = Path(cfg.data.tokenizer).expanduser()
        tok = tokenizer.load(path)
    else:
        key = _key(TOKENIZER_VERSION, sources.fingerprint(cfg.data.train, "train", cfg.data.text_field),
                   cfg.model.vocab_size, cfg.data.tokenizer_sample_mb)
        path = _cache_dir(cfg) / f"tokenizer-{key}" / "tokenizer.json"
        if path.is_file():
            tok = tokenizer.load(path)
        else:
            mb = cfg.data.tokenizer_sample_mb
            log(f"training a byte-level BPE tokenizer (vocab {cfg.model.vocab_size}) on "
                f"{'all of' if mb is None else f'the first {mb:g} MB of'} {cfg.data.train} ...")
            tok = tokenizer.train_bpe(sources.documents(cfg.data.train, "train", cfg.data.text_field),
                                      cfg.model.vocab_size, mb)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name("tokenizer.json.tmp")
            tok.save(str(tmp))
            os.replace(tmp, path)
    if tok.get_vocab_size() > cfg.model.vocab_size:
        raise UserError(f"model.vocab_size: {cfg.model.vocab_size} is smaller than the tokenizer's "
                        f"{tok.get_vocab_size()} tokens")
    return tok, path


def encode_documents(tok: Tokenizer, docs, chunk: int = 256, chunk_chars: int = 1 << 20) -> np.ndarray:
    """Token ids of every document, each followed by the end-of-text token. Documents are encoded in bounded pieces
    (tokenizer.pieces), which leaves the tokens of normal text unchanged."""
    eos = np.asarray([tokenizer.eos_id(tok)], dtype=np.int64)
    out, batch = [], []

    def flush():
        for enc, last in zip(tok.encode_batch([p for p, _ in batch], add_special_tokens=False),
                             (last for _, last in batch), strict=True):
            out.append(np.asarray(enc.ids, dtype=np.int64))
            if last:
                out.append(eos)
        batch.clear()

    chars = 0
    for doc in docs:
        parts = list(tokenizer.pieces(doc))
        for i, p in enumerate(parts):
            batch.append((p, i == len(parts) - 1))
            chars += len(p)
            if len(batch) >= chunk or chars >= chunk_chars:  # an encoding batch holds ~100 bytes per token
                flush()
                chars = 0
    flush()
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def token_file(cfg: Config, tok: Tokenizer, tok_path: Path, split: str, log=print) -> np.ndarray:
    spec = cfg.data.train if split == "train" else cfg.data.val
    key = _key(sources.fingerprint(spec, split, cfg.data.text_field),
               hashlib.sha256(tok_path.read_bytes()).hexdigest(), cfg.model.vocab_size)
    path = _cache_dir(cfg) / f"tokens-{key}" / f"{split}.bin"
    if not path.is_file():
        log(f"tokenizing {split} split of {spec} ...")
        ids = encode_documents(tok, sources.documents(spec, split, cfg.data.text_field))
        path.parent.mkdir(parents=True, exist_ok=True)
        tokens.write(path, ids, cfg.model.vocab_size)
    ids = tokens.read(path)
    if len(ids) < cfg.train.seq_len + 2:
        raise UserError(f"data.{split}: only {len(ids)} tokens, fewer than one window of train.seq_len "
                        f"{cfg.train.seq_len}")
    return ids


def prepare(cfg: Config, log=print) -> Prepared:
    tok, tok_path = tokenizer_for(cfg, log)
    return Prepared(tok, tok_path, token_file(cfg, tok, tok_path, "train", log),
                    token_file(cfg, tok, tok_path, "val", log))


def unigram_entropy(ids: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats/token) of the empirical unigram distribution: the loss of the best context-free model."""
    counts = np.bincount(np.asarray(ids), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
