"""The word-cache encoder gives exactly `tokenizers`' tokens: on the bundled corpus, on random text of every Unicode
class, with literal special tokens, with its cache emptied mid-stream, and through the worker processes."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, normalizers, pre_tokenizers

from stackwise import data as data_mod
from stackwise.data import sources, tokenizer, word_cache

# letters, digits and spaces from many scripts, characters the two regex engines may class differently (superscripts,
# fractions, Roman numerals, ASCII separators, no-break and ideographic spaces), apostrophes, marks and emoji
ALPHABET = list("abcXYZ019 \n\t'_!?.,-\"") + ["'s", "'ll", " 's", "<|endoftext|>", "\r\n", "  ", "\n\n"] + list(
    "éßÆñЖжΩλ中文字かなー한글١٢٣²³½ⅧⅫ\x1c\x1d\x1e\x1f\x0b\x0c\x85\xa0\u2009\u3000\u200b’“”—…•\u0301\u0300😀🚀")


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    rng = random.Random(0)
    text = "".join(rng.choice(ALPHABET) for _ in range(40_000))
    return tokenizer.train_bpe([text, *sources.documents("bundled", "val")], 600)


def _reference(tok: Tokenizer, batch: list[tuple[str, bool]]) -> list[int]:
    eos = tokenizer.eos_id(tok)
    return [i for piece, last in batch for i in [*tok.encode(piece, add_special_tokens=False).ids,
                                                 *([eos] if last else [])]]


def test_the_bundled_corpus_encodes_exactly_as_tokenizers_does(tok):
    batch = [(p, i == len(ps) - 1) for doc in sources.documents("bundled", "val")
             for ps in [list(tokenizer.pieces(doc))] for i, p in enumerate(ps)]
    cache = word_cache.WordCache(tok, tokenizer.eos_id(tok))
    ids = np.concatenate([cache.encode(batch[i:i + 50]) for i in range(0, len(batch), 50)])
    assert ids.dtype == np.uint32 and ids.tolist() == _reference(tok, batch)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(ALPHABET), max_size=40).map("".join), st.booleans()),
                min_size=1, max_size=6))
def test_random_text_of_every_class_encodes_exactly_as_tokenizers_does(tok, batch):
    cache = word_cache.WordCache(tok, tokenizer.eos_id(tok))
    assert cache.encode(batch).tolist() == _reference(tok, batch)
    assert cache.encode(batch).tolist() == _reference(tok, batch)  # again, from the cache


@pytest.fixture(scope="module")
def split_tok() -> Tokenizer:
    rng = random.Random(1)
    text = "".join(rng.choice(ALPHABET) for _ in range(40_000))
    text += " ".join(str(rng.randrange(10**6)) for _ in range(3000))
    return tokenizer.train_bpe([text], 600, split_digits=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from([*ALPHABET, "457", " 2026", "x=12"]), max_size=40).map("".join),
                          st.booleans()), min_size=1, max_size=6))
def test_split_digits_tokenizers_take_the_fast_path_with_the_same_tokens(split_tok, batch):
    assert word_cache.supports(split_tok)
    cache = word_cache.WordCache(split_tok, tokenizer.eos_id(split_tok))
    assert cache.encode(batch).tolist() == _reference(split_tok, batch)


@pytest.fixture(scope="module")
def names_tok() -> Tokenizer:
    rng = random.Random(2)
    text = "".join(rng.choice(ALPHABET) for _ in range(40_000))
    text += " ".join(f"{rng.choice('xyz')}={rng.randrange(10**3)} of {rng.choice('xyz')}?" for _ in range(3000))
    return tokenizer.train_bpe([text], 600, split_digits=True, split_names=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from([*ALPHABET, "x=12", " y", " of x?", "\nz=y", " a b"]),
                                   max_size=40).map("".join), st.booleans()), min_size=1, max_size=6))
def test_split_names_tokenizers_take_the_fast_path_with_the_same_tokens(names_tok, batch):
    assert word_cache.supports(names_tok)
    cache = word_cache.WordCache(names_tok, tokenizer.eos_id(names_tok))
    assert cache.encode(batch).tolist() == _reference(names_tok, batch)


def test_characters_the_engines_class_differently_go_to_tokenizers(tok, monkeypatch):
    # no character of this Unicode version is known to differ; simulate one: an engine whose tables lack "é" as a
    # letter (a newer letter, say) would cut "café" after "caf"
    def without_e(pattern: str) -> str:
        other = r"[^\s\p{L}\p{N}]"
        return pattern.replace(other, "@").replace(r"\p{L}", r"(?:(?!é)\p{L})").replace("@", rf"(?:é|{other})")

    monkeypatch.setattr(word_cache, "PATTERN", regex.compile(without_e(word_cache.PATTERN.pattern)))
    monkeypatch.setattr(word_cache, "_CLASSES", regex.compile(without_e(word_cache._CLASSES.pattern)))
    cache = word_cache.WordCache(Tokenizer.from_str(tok.to_str()), tokenizer.eos_id(tok))
    assert not cache._char_agrees("é") and cache._char_agrees("ß") and cache._char_agrees("a")
    assert word_cache.PATTERN.findall("un café") == ["un", " caf", "é"]  # what the fast path would have done
    assert cache._split("plain ascii text, 12 words") is not None and cache._split("ein Fuß") is not None
    assert cache._split("un café") is None and cache._split("an <|endoftext|> inside") is None
    calls = []
    monkeypatch.setattr(cache.tok, "encode", lambda *a, **k: calls.append(a) or tok.encode(*a, **k))
    batch = [("un café noir", False), ("a <|endoftext|> b", True), ("ein Fuß", True)]
    assert cache.encode(batch).tolist() == _reference(tok, batch)
    assert calls == [("un café noir",), ("a <|endoftext|> b",)]


def test_an_emptied_cache_gives_the_same_tokens(tok, monkeypatch):
    rng = random.Random(3)
    batches = [[("".join(rng.choice(ALPHABET) for _ in range(300)), rng.random() < 0.3) for _ in range(5)]
               for _ in range(20)]
    big = word_cache.WordCache(tok, tokenizer.eos_id(tok))
    expected = [big.encode(b).tolist() for b in batches]
    monkeypatch.setattr(word_cache, "MAX_WORDS", 30)
    small = word_cache.WordCache(tok, tokenizer.eos_id(tok))
    assert [small.encode(b).tolist() for b in batches] == expected
    assert len(small.index) < 30 + 5 * 300  # it was emptied on the way


def test_only_plain_byte_level_bpe_takes_the_fast_path(tok):
    assert word_cache.supports(tok)
    other = Tokenizer.from_str(tok.to_str())
    other.normalizer = normalizers.NFKC()
    assert not word_cache.supports(other)
    other = Tokenizer.from_str(tok.to_str())
    other.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    assert not word_cache.supports(other)
    other.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.ByteLevel(add_prefix_space=False),
                                                   pre_tokenizers.Digits(individual_digits=False)])
    assert not word_cache.supports(other)
    spec = json.loads(tok.to_str())
    spec["model"]["dropout"] = 0.1
    assert not word_cache.supports(Tokenizer.from_str(json.dumps(spec)))
    # a tokenizer it does not support still encodes (with tokenizers itself), with the same tokens as plain encode
    other = Tokenizer.from_str(tok.to_str())
    other.normalizer = normalizers.NFKC()
    batch = [("Ⅻ café ½", False), ("x", True)]
    ids = np.concatenate([i for i, _ in data_mod.encode_pieces(other, ((p, last, "") for p, last in batch))])
    assert ids.tolist() == _reference(other, batch)


def test_worker_processes_give_the_same_tokens_in_order(tok, monkeypatch):
    rng = random.Random(4)
    marked = [("".join(rng.choice(ALPHABET) for _ in range(2000)), rng.random() < 0.5, "") for _ in range(40)]
    inline = np.concatenate([i for i, _ in data_mod.encode_pieces(tok, iter(marked), batch_pieces=3)])
    monkeypatch.setattr(data_mod, "PARALLEL_AFTER_BYTES", 5000)  # two batches here, then the workers
    parts = list(data_mod.encode_pieces(tok, iter(marked), batch_pieces=3, workers=2))
    assert np.concatenate([i for i, _ in parts]).tolist() == inline.tolist() == _reference(
        tok, [(p, last) for p, last, _ in marked])
    assert sum(n for _, n in parts) == sum(len(p.encode()) for p, _, _ in marked)
