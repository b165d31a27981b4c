"""Where text comes from: the bundled corpus, local .txt/.jsonl files or folders, or a Hugging Face dataset.

A source spec is a string (the `data.train` / `data.val` fields):
  bundled            the public-domain corpus shipped inside the package (docs/corpus.md)
  PATH.txt           one document per file
  PATH.jsonl         one document per line, its text in `data.text_field`
  FOLDER             every .txt and .jsonl file below it, in sorted order
  hf:NAME[:SPLIT]    a Hugging Face dataset (needs `pip install -e ".[hf]"`); SPLIT defaults to the split asked for
Each source yields documents (strings); the tokenizer puts an end-of-text token between them.
"""

from __future__ import annotations

import hashlib
import json
import lzma
from collections.abc import Iterator
from pathlib import Path

from stackwise.errors import UserError

BUNDLED_DIR = Path(__file__).parent / "bundled"
HF_PREFIX = "hf:"
TEXT_SUFFIXES = (".txt", ".jsonl")


def _hf_split(spec: str, split: str) -> tuple[str, str]:
    name, _, hf_split = spec[len(HF_PREFIX):].partition(":")
    return name, hf_split or {"val": "validation"}.get(split, split)


def _load_hf(spec: str, split: str):
    try:
        import datasets
    except ImportError:
        raise UserError(f"{spec}: Hugging Face datasets need the optional extra: pip install -e \".[hf]\"") from None
    name, hf_split = _hf_split(spec, split)
    try:
        return datasets.load_dataset(name, split=hf_split)
    except Exception as e:  # the hub's errors are many and version-dependent; name the dataset and the cause
        raise UserError(f"{spec}: could not load Hugging Face dataset '{name}' split '{hf_split}' ({e})") from None


def _local_files(spec: str, key: str) -> list[Path]:
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        if not files:
            raise UserError(f"{key}: folder {spec} holds no .txt or .jsonl files")
        return files
    if path.is_file():
        if path.suffix not in TEXT_SUFFIXES:
            raise UserError(f"{key}: {spec} is not a .txt or .jsonl file")
        return [path]
    raise UserError(f"{key}: file not found: {spec} (for a Hugging Face dataset write hf:NAME)")


def _bundled_file(split: str) -> Path:
    path = BUNDLED_DIR / f"{'val' if split == 'val' else 'train'}.jsonl.xz"
    assert path.is_file(), f"bundled corpus missing: {path}"
    return path


def _jsonl_documents(lines: Iterator[str], where: str, text_field: str) -> Iterator[str]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{where}:{n}: not valid JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
            raise UserError(f"{where}:{n}: no string field '{text_field}'")
        yield row[text_field]


def documents(spec: str, split: str, text_field: str = "text") -> Iterator[str]:
    """Yield the documents of a source; `split` is 'train' or 'val' (names the field in errors, picks bundled/hf)."""
    key = f"data.{split}"
    if spec == "bundled":
        with lzma.open(_bundled_file(split), "rt", encoding="utf-8") as f:
            yield from _jsonl_documents(f, f"bundled {split}", "text")
        return
    if spec.startswith(HF_PREFIX):
        dataset = _load_hf(spec, split)
        if text_field not in dataset.column_names:
            raise UserError(f"{spec}: no column '{text_field}' (columns: {', '.join(dataset.column_names)}); "
                            "set data.text_field")
        for row in dataset:
            if isinstance(row[text_field], str) and row[text_field]:
                yield row[text_field]
        return
    for path in _local_files(spec, key):
        try:
            if path.suffix == ".jsonl":
                with path.open(encoding="utf-8") as f:
                    yield from _jsonl_documents(f, str(path), text_field)
            else:
                yield path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{key}: {path} is not UTF-8 text") from None


def fingerprint(spec: str, split: str, text_field: str = "text") -> str:
    """A content hash of the source, so caches are rebuilt when the text changes."""
    h = hashlib.sha256(f"{split}|{text_field}|".encode())
    if spec == "bundled":
        h.update(_bundled_file(split).read_bytes())
    elif spec.startswith(HF_PREFIX):
        dataset = _load_hf(spec, split)
        h.update(f"{_hf_split(spec, split)}|{getattr(dataset, '_fingerprint', '')}".encode())
    else:
        for path in _local_files(spec, f"data.{split}"):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]
