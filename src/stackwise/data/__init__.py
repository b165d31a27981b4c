"""Data preparation: tokenizer (trained or given), token files (built once, cached), and loaders.

Caches live under `data.cache_dir`, keyed by a content hash of the text and the settings that shape the result, so
a changed corpus or vocab size rebuilds and an unchanged one is reused across runs.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from tokenizers import Tokenizer

from stackwise.config import Config, parse_stages
from stackwise.data import sources, tokenizer, tokens, word_cache
from stackwise.errors import UserError

TOKENIZER_VERSION = "bytelevel-bpe-1"


@dataclass
class Prepared:
    tokenizer: Tokenizer
    tokenizer_path: Path
    train_stages: list[tuple[int, np.ndarray]]  # (first step, memory-mapped token ids) per data stage; one without
    val: np.ndarray

    @property
    def train(self) -> np.ndarray:
        """The first stage's token ids (the only ones without data.stages)."""
        return self.train_stages[0][1]


def _key(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _cache_dir(cfg: Config) -> Path:
    path = Path(os.environ.get("STACKWISE_CACHE", cfg.data.cache_dir)).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def train_source(cfg: Config) -> str:
    """The training split's source spec: data.stages (as a stages: spec, every stage's text) or data.mix (as a mix:
    spec) when set, else data.train."""
    if cfg.data.stages:
        return sources.STAGES_PREFIX + cfg.data.stages
    return sources.MIX_PREFIX + cfg.data.mix if cfg.data.mix else cfg.data.train


def train_stages(cfg: Config) -> list[tuple[int, str]]:
    """(first step, source spec) of each stage of the training data: one stage from step 0 without data.stages."""
    if cfg.data.stages:
        return [(start, sources.MIX_PREFIX + mix) for start, mix in parse_stages(cfg.data.stages)]
    return [(0, train_source(cfg))]


IDENTITY_FILE = "data.json"


def identity(cfg: Config) -> dict[str, str]:
    """What a run trains and validates on, by content: the fingerprints of its train and validation sources (an
    edited file, another generator version or another mix changes them; the config alone names a path or a spec, not
    the text behind it). Saved with every run as data.json."""
    return {"train": sources.fingerprint(train_source(cfg), "train", cfg.data.text_field),
            "val": sources.fingerprint(cfg.data.val, "val", cfg.data.text_field)}


def save_identity(cfg: Config, run: Path) -> None:
    (run / IDENTITY_FILE).write_text(json.dumps(identity(cfg), indent=2) + "\n")


def check_identity(run: Path, cfg: Config, action: str, known: dict | None = None) -> None:
    """Refuse, in one line, to `action` (resume, reuse) a run whose text has changed since it trained. A run from
    before data.json existed has nothing to compare and passes. `known`: fingerprints already taken by the caller
    (filled in here), so that runs sharing one corpus read it once."""
    path = run / IDENTITY_FILE
    if not path.is_file():
        return
    try:
        stored = json.loads(path.read_text())
        assert isinstance(stored, dict)
    except (ValueError, AssertionError):
        raise UserError(f"{path}: not the JSON object stackwise writes; cannot tell what the run trained on") from None
    key = (train_source(cfg), cfg.data.val, cfg.data.text_field)
    known = {} if known is None else known
    now = known[key] if key in known else known.setdefault(key, identity(cfg))
    for split, spec in (("train", train_source(cfg)), ("val", cfg.data.val)):
        if stored.get(split) != now[split]:
            raise UserError(f"{run}: cannot {action} it: the text of its {split} split ({spec}) has changed since it "
                            f"trained (content fingerprint {stored.get(split)} then, {now[split]} now)")


def tokenizer_for(cfg: Config, log=print) -> tuple[Tokenizer, Path]:
    """The user's tokenizer.json, or a BPE trained on the train split (cached by corpus hash + vocab size)."""
    if cfg.data.tokenizer:
        path = Path(cfg.data.tokenizer).expanduser()
        tok = tokenizer.load(path)
    else:
        key = _key(TOKENIZER_VERSION, sources.fingerprint(train_source(cfg), "train", cfg.data.text_field),
                   cfg.model.vocab_size, cfg.data.tokenizer_sample_mb,
                   *(["split-digits"] if cfg.data.split_digits else []),  # (absent: older caches keep their keys)
                   *(["split-names"] if cfg.data.split_names else []))
        path = _cache_dir(cfg) / f"tokenizer-{key}" / "tokenizer.json"
        if path.is_file():
            tok = tokenizer.load(path)
        else:
            mb = cfg.data.tokenizer_sample_mb
            log(f"training a byte-level BPE tokenizer (vocab {cfg.model.vocab_size}"
                f"{', digits split' if cfg.data.split_digits else ''}"
                f"{', one-letter names split' if cfg.data.split_names else ''}) on "
                f"{'all of' if mb is None else f'up to {mb:g} MB of'} {train_source(cfg)} ...")
            tok = tokenizer.train_bpe(sources.sample(train_source(cfg), "train", cfg.data.text_field,
                                                     None if mb is None else mb * 2**20), cfg.model.vocab_size,
                                      cfg.data.split_digits, cfg.data.split_names)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"tokenizer.json.tmp-{os.getpid()}")  # (own name: concurrent runs, see tokens.Writer)
            tok.save(str(tmp))
            os.replace(tmp, path)
    if tok.get_vocab_size() > cfg.model.vocab_size:
        raise UserError(f"model.vocab_size: {cfg.model.vocab_size} is smaller than the tokenizer's "
                        f"{tok.get_vocab_size()} tokens")
    return tok, path


PARALLEL_AFTER_BYTES = 8 << 20  # a source bigger than this is encoded by one worker process per core


def encode_pieces(tok: Tokenizer, marked, batch_pieces: int = 256, batch_chars: int = 1 << 20,
                  workers: int | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """Token ids of a stream of (piece, ends a document, where), encoded in batches of bounded size with the
    end-of-text token after each document. Yields (ids, bytes of text they came from).

    A byte-level BPE of the kind stackwise trains goes through word_cache (exactly the same tokens, several times
    faster): in this process for the first PARALLEL_AFTER_BYTES, then, for a bigger source, in one worker process per
    core (`workers`, default: the cores this process may use) with a bounded number of batches in flight. Any other
    tokenizer encodes with `tokenizers` on all cores."""
    eos = tokenizer.eos_id(tok)
    batches = _batches(marked, batch_pieces, batch_chars)
    if not word_cache.supports(tok):
        for batch in batches:
            encodings = tok.encode_batch_fast([p for p, _ in batch], add_special_tokens=False)
            ids = [np.asarray(enc.ids + ([eos] if last else []), dtype=np.uint32)
                   for enc, (_, last) in zip(encodings, batch, strict=True)]
            yield np.concatenate(ids), _nbytes(batch)
        return
    cache = word_cache.WordCache(tok, eos)
    done = 0
    for batch in batches:
        nbytes = _nbytes(batch)  # (UTF-8 encodes the batch: once)
        yield cache.encode(batch), nbytes
        done += nbytes
        if done >= PARALLEL_AFTER_BYTES:
            break
    else:
        return
    workers = workers or (len(os.sched_getaffinity(0)) if sys.platform == "linux" else 1)
    if workers < 2:
        for batch in batches:
            yield cache.encode(batch), _nbytes(batch)
        return
    del cache
    # Forked like PyTorch's DataLoader workers: `spawn` and `forkserver` would re-run the caller's main module in each
    # worker (a script that calls prepare() at top level would recurse). The workers run only numpy, regex and
    # tokenizers (without its thread pool: TOKENIZERS_PARALLELISM is false while they start).
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        with ProcessPoolExecutor(workers, multiprocessing.get_context("fork"), word_cache.init_worker,
                                 (tok.to_str(), eos)) as pool:
            pending: deque = deque()
            for batch in batches:
                pending.append((pool.submit(word_cache.encode_in_worker, batch), _nbytes(batch)))
                if len(pending) >= 2 * workers:
                    future, nbytes = pending.popleft()
                    yield future.result(), nbytes
            while pending:
                future, nbytes = pending.popleft()
                yield future.result(), nbytes
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved


def _batches(marked, batch_pieces: int, batch_chars: int) -> Iterator[list[tuple[str, bool]]]:
    batch: list[tuple[str, bool]] = []
    chars = 0
    for piece, last, _ in marked:
        batch.append((piece, last))
        chars += len(piece)
        if len(batch) >= batch_pieces or chars >= batch_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _nbytes(batch: list[tuple[str, bool]]) -> int:
    return sum(len(p.encode()) for p, _ in batch)


def _progress(console: Console, what: str, total: int | None) -> Progress:
    return Progress(TextColumn(f"[bold]{what}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TextColumn("{task.fields[tokens]:,} tokens"), TimeRemainingColumn(), console=console,
                    transient=False)


def token_file(cfg: Config, tok: Tokenizer, tok_path: Path, split: str, log=print,
               console: Console | None = None, spec: str | None = None) -> np.ndarray:
    """The split's token file, built once (streamed, in bounded memory, with a progress bar) and then memory-mapped.
    For the train split, data.max_tokens keeps only the first N tokens of the source. `spec`: another source than
    the split's (a data stage's)."""
    spec = spec or (train_source(cfg) if split == "train" else cfg.data.val)
    cap = cfg.data.max_tokens if split == "train" else None
    key = _key(sources.fingerprint(spec, split, cfg.data.text_field),
               hashlib.sha256(tok_path.read_bytes()).hexdigest(), cfg.model.vocab_size, *([cap] if cap else []))
    path = _cache_dir(cfg) / f"tokens-{key}" / f"{split}.bin"
    if not path.is_file():
        log(f"tokenizing {split} split of {spec}" + (f" (the first {cap:,} tokens)" if cap else "") + " ...")
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = tokens.Writer(path, cfg.model.vocab_size)
        try:
            with _progress(console or Console(quiet=True), f"tokenize {split}",
                           sources.size_bytes(spec, split)) as bar:
                task = bar.add_task(split, tokens=0)
                for ids, nbytes in encode_pieces(tok, sources.pieces(spec, split, cfg.data.text_field)):
                    if cap is not None and writer.n + ids.size >= cap:
                        writer.append(ids[:cap - writer.n])
                        break
                    writer.append(ids)
                    bar.update(task, advance=nbytes, tokens=writer.n)
                bar.update(task, tokens=writer.n)
        except BaseException:
            writer.abort()
            raise
        writer.close()
    ids = tokens.read(path)
    if len(ids) < cfg.train.seq_len + 2:
        raise UserError(f"data.{split}: only {len(ids)} tokens, fewer than one window of train.seq_len "
                        f"{cfg.train.seq_len}")
    return ids


def prepare(cfg: Config, log=print, console: Console | None = None) -> Prepared:
    """Tokenizer and token files of a config (each built once and cached); `console` shows progress bars."""
    tok, tok_path = tokenizer_for(cfg, log)
    train = [(start, token_file(cfg, tok, tok_path, "train", log, console, spec)) for start, spec in train_stages(cfg)]
    return Prepared(tok, tok_path, train, token_file(cfg, tok, tok_path, "val", log, console))


def unigram_entropy(ids: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats/token) of the empirical unigram distribution: the loss of the best context-free model."""
    counts = np.bincount(np.asarray(ids), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
