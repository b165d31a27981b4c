"""Preparing data in bounded memory: text streamed a megabyte at a time and cut into pieces where no token can
change, encoded in bounded batches, written incrementally; an interrupted preparation is never trusted."""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pytest
import zstandard

from stackwise import data as data_mod
from stackwise.data import sources, tokenizer
from stackwise.errors import UserError

WORDS = "the cat dog sat on a mat and ran to house big small red blue it was she he saw".split()


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) + rng.choice(["", ".", ",", "\n", "\n\n"]) * (rng.random() < 0.2)
                    for _ in range(n))


@pytest.fixture(scope="module")
def tok(corpus):
    return tokenizer.train_bpe(sources.documents(str(corpus["train"]), "train"), 300)


def _reference(tok, docs: list[str]) -> list[int]:
    """The plain encoding of every whole document, each followed by end-of-text."""
    eos = tokenizer.eos_id(tok)
    return [i for doc in docs for i in [*tok.encode(doc, add_special_tokens=False).ids, eos]]


def test_streamed_pieces_equal_the_pieces_of_the_whole_text():
    rng = random.Random(0)
    for text in [_words(rng, 3000), "x" * 5000, "a b" * 2000, "", "ab\ncd"]:
        whole = list(tokenizer.pieces(text, 500))
        assert "".join(whole) == text and all(len(p) <= 500 for p in whole)
        for size in (1, 3, 499, 500, 501, 502, 4096):
            chunks = [text[i:i + size] for i in range(0, len(text), size)] or [""]
            assert list(tokenizer.stream_pieces(chunks, 500)) == whole


def test_a_giant_line_and_many_small_files_give_the_reference_tokens(tok, tmp_path):
    rng = random.Random(1)
    giant = _words(rng, 60_000).replace("\n", " ")  # ~250k characters on one line: 16 pieces
    (tmp_path / "giant.txt").write_text(giant)
    assert len(list(tokenizer.pieces(giant))) > 10
    ids = np.concatenate([i for i, _ in data_mod.encode_pieces(tok, sources.pieces(str(tmp_path / "giant.txt"),
                                                                                     "train"))])
    assert ids.tolist() == _reference(tok, [giant])
    folder = tmp_path / "many"
    (folder / "sub").mkdir(parents=True)
    docs = []
    for i in range(120):
        text = _words(rng, rng.randint(0, 40))
        docs.append(text)
        name = folder / ("sub" if i % 3 else ".") / f"{i:03d}.txt"
        if i % 7 == 0:
            name = name.with_suffix(".txt.gz")
            name.write_bytes(gzip.compress(text.encode()))
        elif i % 11 == 0:
            name = name.with_suffix(".txt.zst")
            name.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
        else:
            name.write_text(text)
    order = sorted(p for p in folder.rglob("*") if p.is_file())
    by_name = {f"{i:03d}": d for i, d in enumerate(docs)}
    expected = _reference(tok, [by_name[p.name.split(".")[0]] for p in order])
    ids = np.concatenate([i for i, _ in data_mod.encode_pieces(tok, sources.pieces(str(folder), "train"))])
    assert ids.tolist() == expected


def test_an_interrupted_preparation_is_not_trusted(tiny_cfg, tmp_path, monkeypatch):
    cfg = tiny_cfg(data__cache_dir=str(tmp_path / "cache"))
    monkeypatch.setenv("STACKWISE_CACHE", str(tmp_path / "cache"))
    real = data_mod.encode_pieces

    def dies_midway(tok, marked, **kwargs):
        for n, item in enumerate(real(tok, marked, batch_pieces=1, **kwargs)):
            if n == 3:
                raise KeyboardInterrupt  # a kill in the middle of writing the token file
            yield item

    monkeypatch.setattr(data_mod, "encode_pieces", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        data_mod.prepare(cfg, log=lambda *_: None)
    assert not list((tmp_path / "cache").rglob("*.bin*"))  # no token file, and the unfinished one is dropped
    monkeypatch.setattr(data_mod, "encode_pieces", real)
    again = data_mod.prepare(cfg, log=lambda *_: None)
    monkeypatch.setenv("STACKWISE_CACHE", str(tmp_path / "clean"))
    clean = data_mod.prepare(cfg, log=lambda *_: None)
    assert np.array_equal(again.train, clean.train) and np.array_equal(again.val, clean.val)


def test_max_tokens_keeps_the_first_tokens(tiny_cfg):
    full = data_mod.prepare(tiny_cfg(), log=lambda *_: None)
    cut = data_mod.prepare(tiny_cfg(data__max_tokens=1000), log=lambda *_: None)
    assert len(cut.train) == 1000 and np.array_equal(cut.train, full.train[:1000])
    assert np.array_equal(cut.val, full.val)  # the cap is the training split's


def test_the_tokenizer_sample_is_spread_over_the_files(tmp_path):
    for name, word in (("a.txt", "alpha"), ("b.txt", "beta"), ("c.txt", "gamma")):
        (tmp_path / name).write_text(" ".join([word] * 20_000))  # ~120 kB each, 8 pieces
    sample = list(sources.sample(str(tmp_path), "train", "text", 60_000))
    assert {p.split()[0] for p in sample} == {"alpha", "beta", "gamma"}
    assert 60_000 <= sum(len(p.encode()) for p in sample) <= 60_000 + 3 * tokenizer.PIECE_CHARS
    assert "".join(sources.sample(str(tmp_path), "train", "text", None)) == "".join(
        (tmp_path / n).read_text() for n in ("a.txt", "b.txt", "c.txt"))


def test_peak_memory_of_preparing_a_big_file_does_not_follow_its_size(tmp_path):
    """A ~100 MB .txt (lines of 20,000 words) is prepared by a fresh process; the peak memory of its whole process
    tree (it and its encoding workers, summed) stays far below the ~200 bytes per character that whole-file encoding
    used to take (~20 GB here). The 50 MB to 1 GB figures are benchmarks/data_prep.py's, in docs/benchmarks.md."""
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import peak_memory

    rng = random.Random(2)
    block = "".join(_words(rng, 20_000) + "\n\n" for _ in range(25))  # ~2 MB, repeated
    big = tmp_path / "big.txt"
    with big.open("w") as f:
        for _ in range(50):
            f.write(block)
    size = big.stat().st_size
    (tmp_path / "val.txt").write_text(_words(rng, 5000))
    script = ("import sys; from stackwise import config, data; "
              "cfg = config.load('tiny', {'data.train': sys.argv[1], 'data.val': sys.argv[2], "
              "'data.tokenizer_sample_mb': 1}); print(len(data.prepare(cfg, log=lambda *_: None).train))")
    out = tmp_path / "out.txt"
    with out.open("w") as f:
        code, _, peak, _ = peak_memory.run([sys.executable, "-c", script, str(big), str(tmp_path / "val.txt")],
                                           stdout=f, env={**os.environ, "STACKWISE_CACHE": str(tmp_path / "cache")})
    assert code == 0 and int(out.read_text()) > size // 8 and size > 100e6
    assert 0 < peak < 2**30, f"peak {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB text"


def test_compressed_jsonl_and_a_corrupt_archive(tok, tmp_path):
    rows = [{"text": f"document {i} the cat sat"} for i in range(5)]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(body))
    for name in ("a.jsonl.zst", "b.jsonl.gz"):
        assert list(sources.documents(str(tmp_path / name), "train")) == [r["text"] for r in rows]
    (tmp_path / "bad.txt.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="bad.txt.gz could not be read"):
        list(sources.pieces(str(tmp_path / "bad.txt.gz"), "train"))
