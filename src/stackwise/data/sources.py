"""Where text comes from: the bundled corpus, local .txt/.jsonl files or folders, or a Hugging Face dataset.

A source spec is a string (the `data.train` / `data.val` fields):
  bundled            the public-domain corpus shipped inside the package (docs/corpus.md)
  PATH.txt           one document per file (read a megabyte at a time: any size)
  PATH.jsonl         one document per line, its text in `data.text_field`
                     (either may be compressed: .gz, .xz, or .zst with `pip install -e ".[zst]"`)
  FOLDER             every such file below it, in sorted order
  hf:NAME[:SPLIT]    a Hugging Face dataset, streamed (needs `pip install -e ".[hf]"`); SPLIT defaults to the split
                     asked for
  synthetic[:SEED[:MB[:KINDS]]]
                     generated text with the structure reasoning needs (data/synthetic.py), MB of it (default 16),
                     of the kinds joined by + in KINDS (default all: `synthetic:0:16:repeat+program`)
  mix:SRC:W,SRC:W    several sources by weight (`data.mix`, which builds this spec): documents are interleaved so
                     that each source's share of the characters follows its weight; the mix ends when any source
                     runs out. Deterministic (no randomness: the source furthest below its share goes next).
  stages:0=MIX;STEP=MIX
                     `data.stages`, a mix per stage of training (data/__init__.py gives each stage its own token
                     file): as a source, every stage's parts at once (each stage's weights over the number of stages),
                     what the tokenizer trains on and the run's train fingerprint covers
Each source yields documents (strings); the tokenizer puts an end-of-text token between them.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import lzma
from collections.abc import Iterator
from pathlib import Path

from stackwise.config import parse_mix, parse_stages
from stackwise.data import synthetic, tokenizer
from stackwise.errors import UserError

BUNDLED_DIR = Path(__file__).parent / "bundled"
HF_PREFIX = "hf:"
MIX_PREFIX = "mix:"
STAGES_PREFIX = "stages:"
SYNTHETIC = "synthetic"
TEXT_SUFFIXES = (".txt", ".jsonl")
def _open_zstd(path: Path, mode: str):
    try:
        import zstandard
    except ImportError:
        raise UserError(f"{path}: .zst files need the optional extra: pip install -e \".[zst]\"") from None
    return io.BufferedReader(zstandard.open(path, mode))  # (buffered: line by line for .jsonl.zst)


COMPRESSED = {".gz": gzip.open, ".xz": lzma.open, ".zst": _open_zstd}
READ_BYTES = 1 << 20


def _kind(path: Path) -> str | None:
    """'.txt' or '.jsonl' for a text file, compressed or not (None for anything else)."""
    suffixes = path.suffixes[-2:]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes and suffixes[-1] in TEXT_SUFFIXES else None


def _open_binary(path: Path):
    return COMPRESSED.get(path.suffix, open)(path, "rb")


def _hf_split(spec: str, split: str) -> tuple[str, str]:
    name, _, hf_split = spec[len(HF_PREFIX):].partition(":")
    return name, hf_split or {"val": "validation"}.get(split, split)


def _load_hf(spec: str, split: str):
    try:
        import datasets
    except ImportError:
        raise UserError(f"{spec}: Hugging Face datasets need the optional extra: pip install -e \".[hf]\"") from None
    name, hf_split = _hf_split(spec, split)
    try:  # streamed: rows arrive as they are read, whatever the dataset's size
        return datasets.load_dataset(name, split=hf_split, streaming=True)
    except Exception as e:  # the hub's errors are many and version-dependent; name the dataset and the cause
        raise UserError(f"{spec}: could not load Hugging Face dataset '{name}' split '{hf_split}' ({e})") from None


def _local_files(spec: str, key: str) -> list[Path]:
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p))
        if not files:
            raise UserError(f"{key}: folder {spec} holds no .txt or .jsonl files")
        return files
    if path.is_file():
        if not _kind(path):
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
    if spec.startswith(MIX_PREFIX):
        yield from _mixed(spec, split, text_field)
        return
    if spec.startswith(STAGES_PREFIX):
        yield from _mixed(stages_mix(spec), split, text_field)
        return
    if _is_synthetic(spec):
        seed, mb, kinds = _synthetic_spec(spec, key)
        yield from synthetic.documents(seed, split, mb * 1e6, kinds)
        return
    if spec == "bundled":
        with lzma.open(_bundled_file(split), "rt", encoding="utf-8") as f:
            yield from _jsonl_documents(f, f"bundled {split}", "text")
        return
    if spec.startswith(HF_PREFIX):
        dataset = _load_hf(spec, split)
        columns = getattr(dataset, "column_names", None)  # (a streamed dataset may know them only from its rows)
        if columns is not None and text_field not in columns:
            raise UserError(f"{spec}: no column '{text_field}' (columns: {', '.join(columns)}); set data.text_field")
        for row in dataset:
            if text_field not in row:
                raise UserError(f"{spec}: no column '{text_field}' (columns: {', '.join(row)}); set data.text_field")
            if isinstance(row[text_field], str) and row[text_field]:
                yield row[text_field]
        return
    for path in _local_files(spec, key):
        if _kind(path) == ".jsonl":
            yield from _jsonl_documents(_text(path, key, lines=True), str(path), text_field)
        else:
            yield "".join(_text(path, key))


def _is_synthetic(spec: str) -> bool:
    return spec == SYNTHETIC or spec.startswith(SYNTHETIC + ":")


SYNTHETIC_FORM = ("synthetic[:SEED[:MB[:KINDS]]] (an integer seed, a size in MB > 0, kinds joined by + among "
                  f"{', '.join(synthetic.KIND_NAMES)})")


def _synthetic_spec(spec: str, key: str) -> tuple[int, float, tuple[str, ...] | None]:
    try:
        seed, mb, kinds = synthetic.parse(spec)
    except ValueError:
        raise UserError(f"{key}: {spec} is not {SYNTHETIC_FORM}") from None
    if mb <= 0:
        raise UserError(f"{key}: {spec} is not {SYNTHETIC_FORM}")
    return seed, mb, kinds


def stages_mix(spec: str) -> str:
    """The mix: spec of every stage's parts at once, each stage's weights divided by the number of stages (a source
    named in several stages takes the sum of its weights)."""
    stages = parse_stages(spec[len(STAGES_PREFIX):])
    weights: dict[str, float] = {}
    for _, mix in stages:
        for part, weight in parse_mix(mix):
            weights[part] = weights.get(part, 0.0) + weight / len(stages)
    return MIX_PREFIX + ",".join(f"{part}:{weight!r}" for part, weight in weights.items())


def _mixed(spec: str, split: str, text_field: str) -> Iterator[str]:
    """The mix's documents: next comes the source whose share of the characters so far is furthest below its
    weight (ties: the first listed), until a source runs out."""
    parts = parse_mix(spec[len(MIX_PREFIX):])
    streams = [documents(s, split, text_field) for s, _ in parts]
    taken = [0] * len(parts)
    try:
        while True:
            total = sum(taken) or 1
            i = min(range(len(parts)), key=lambda j: (taken[j] / total - parts[j][1], j))
            doc = next(streams[i], None)
            if doc is None:
                return
            taken[i] += len(doc)
            yield doc
    finally:
        for stream in streams:
            stream.close()


def _text(path: Path, key: str, lines: bool = False) -> Iterator[str]:
    """A file's text, line by line (lines=True) or a megabyte at a time through an incremental UTF-8 decoder. A
    UserError names a file that is not UTF-8 or cannot be read (a corrupt archive included)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with _open_binary(path) as f:
            if lines:
                for raw in f:
                    yield raw.decode("utf-8")
                return
            while raw := f.read(READ_BYTES):
                yield decoder.decode(raw)
            yield decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise UserError(f"{key}: {path} is not UTF-8 text") from None
    except UserError:
        raise
    except Exception as e:  # OSError, a corrupt archive (EOFError, LZMAError, ZstdError, ...)
        raise UserError(f"{key}: {path} could not be read ({type(e).__name__}: {e})") from None


def _marked(parts: Iterator[str], where: str) -> Iterator[tuple[str, bool, str]]:
    """(piece, is the document's last, where) for a document's pieces."""
    prev = next(parts)
    for part in parts:
        yield prev, False, where
        prev = part
    yield prev, True, where


def _file_pieces(path: Path, key: str, text_field: str) -> Iterator[tuple[str, bool, str]]:
    if _kind(path) == ".jsonl":
        for doc in _jsonl_documents(_text(path, key, lines=True), str(path), text_field):
            yield from _marked(tokenizer.pieces(doc), str(path))
    else:
        yield from _marked(tokenizer.stream_pieces(_text(path, key)), str(path))


def _streams(spec: str, split: str, text_field: str) -> list[Iterator[tuple[str, bool, str]]]:
    """One lazy stream of pieces per file of the source (one in all for the bundled corpus and datasets)."""
    if spec == "bundled" or spec.startswith((HF_PREFIX, MIX_PREFIX, STAGES_PREFIX)) or _is_synthetic(spec):
        return [(x for doc in documents(spec, split, text_field) for x in _marked(tokenizer.pieces(doc), spec))]
    return [_file_pieces(path, f"data.{split}", text_field) for path in _local_files(spec, f"data.{split}")]


def pieces(spec: str, split: str, text_field: str = "text") -> Iterator[tuple[str, bool, str]]:
    """The source's text as bounded pieces (tokenizer.pieces), streamed: (piece, ends a document, where). A .txt
    file of any size is read a megabyte at a time; memory never holds more than one document of a .jsonl (or one
    row of a dataset) and one megabyte of a .txt."""
    for stream in _streams(spec, split, text_field):
        yield from stream


def sample(spec: str, split: str, text_field: str, max_bytes: float | None) -> Iterator[str]:
    """A deterministic sample of the source's pieces for tokenizer training: about max_bytes of UTF-8 in all,
    spread over its files (each file gives the start of its text up to an equal share of what is left; a file
    shorter than its share leaves the rest to the files after it). None: everything."""
    streams = _streams(spec, split, text_field)
    left = max_bytes
    for i, stream in enumerate(streams):
        share = None if left is None else left / (len(streams) - i)
        taken = 0
        for piece, _, _ in stream:
            if share is not None and taken >= share:
                break
            taken += len(piece.encode())
            yield piece
        stream.close()
        if left is not None:
            left -= taken


def size_bytes(spec: str, split: str) -> int | None:
    """Bytes of text to read, for a progress bar (None when unknown: compressed files, datasets)."""
    if _is_synthetic(spec):
        return round(_synthetic_spec(spec, f"data.{split}")[1] * 1e6)
    if spec == "bundled" or spec.startswith((HF_PREFIX, MIX_PREFIX, STAGES_PREFIX)):
        return None
    files = _local_files(spec, f"data.{split}")
    return None if any(p.suffix in COMPRESSED for p in files) else sum(p.stat().st_size for p in files)


def fingerprint(spec: str, split: str, text_field: str = "text") -> str:
    """A content hash of the source, so caches are rebuilt when the text changes."""
    h = hashlib.sha256(f"{split}|{text_field}|".encode())
    if spec.startswith(MIX_PREFIX):
        for part, weight in parse_mix(spec[len(MIX_PREFIX):]):
            h.update(f"{fingerprint(part, split, text_field)}:{weight!r}|".encode())
    elif spec.startswith(STAGES_PREFIX):
        for start, mix in parse_stages(spec[len(STAGES_PREFIX):]):
            h.update(f"{start}={fingerprint(MIX_PREFIX + mix, split, text_field)}|".encode())
    elif _is_synthetic(spec):
        seed, mb, kinds = _synthetic_spec(spec, f"data.{split}")
        h.update(f"{synthetic.VERSION}|{seed, mb}{'' if kinds is None else '|' + '+'.join(kinds)}".encode())
    elif spec == "bundled":
        h.update(_bundled_file(split).read_bytes())
    elif spec.startswith(HF_PREFIX):
        dataset = _load_hf(spec, split)  # a streamed dataset is known by its name, split, config and version
        info = getattr(dataset, "info", None)
        h.update(f"{_hf_split(spec, split)}|{getattr(dataset, '_fingerprint', '')}|"
                 f"{getattr(info, 'config_name', '')}|{getattr(info, 'version', '')}".encode())
    else:
        for path in _local_files(spec, f"data.{split}"):
            h.update(path.name.encode())
            with path.open("rb") as f:
                while chunk := f.read(READ_BYTES):
                    h.update(chunk)
    return h.hexdigest()[:16]
