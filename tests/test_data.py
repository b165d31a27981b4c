import json
import string
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from stackwise import data as data_mod
from stackwise.data import sources, tokenizer, tokens
from stackwise.data.loader import TrainLoader, val_batches
from stackwise.errors import UserError


def test_tokenizer_round_trip_keeps_spaces_and_newlines(corpus):
    tok = tokenizer.train_bpe(sources.documents(str(corpus["train"]), "train"), 300)
    for text in ["the cat sat.", " leading space", "two\n\nlines\n", "  x = 1\n\tü ∑ 😀", ""]:
        assert tok.decode(tok.encode(text).ids) == text
    assert tokenizer.eos_id(tok) == 0
    assert tok.get_vocab_size() <= 300


def test_token_file_round_trip(tmp_path):
    ids = np.array([0, 5, 65535, 7])
    tokens.write(tmp_path / "a.bin", ids, vocab_size=65536)
    back = tokens.read(tmp_path / "a.bin")
    assert back.dtype == np.uint16 and back.tolist() == ids.tolist()
    big = np.array([0, 70000, 3])
    tokens.write(tmp_path / "b.bin", big, vocab_size=100000)
    back = tokens.read(tmp_path / "b.bin")
    assert back.dtype == np.uint32 and back.tolist() == big.tolist()
    (tmp_path / "c.bin").write_bytes(b"garbage" * 10)
    with pytest.raises(UserError, match="not a stackwise token file"):
        tokens.read(tmp_path / "c.bin")
    raw = (tmp_path / "a.bin").read_bytes()
    (tmp_path / "d.bin").write_bytes(raw[:-2])
    with pytest.raises(UserError, match="truncated"):
        tokens.read(tmp_path / "d.bin")


def test_two_writers_of_one_token_file_do_not_clobber_each_other(tmp_path):
    # Two runs started together on a cold cache (compare --jobs 2) build the same file at once.
    path = tmp_path / "train.bin"
    a, b = tokens.Writer(path, 512), tokens.Writer(path, 512)
    a.append(np.arange(100) % 512)
    b.append(np.arange(100) % 512)
    a.close()
    b.close()  # (with one shared temporary name, b's file was a's, already renamed away: FileNotFoundError)
    assert tokens.read(path).tolist() == (np.arange(100) % 512).tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["train.bin"]
    c = tokens.Writer(path, 512)
    c.append(np.arange(5))
    c.abort()
    assert [p.name for p in tmp_path.iterdir()] == ["train.bin"] and len(tokens.read(path)) == 100


def test_loader_is_deterministic_and_resumes_at_its_position():
    data = np.arange(10_000) % 300
    a = TrainLoader(data, batch_size=4, seq_len=16, seed=1)
    batches = [a.next() for _ in range(5)]
    b = TrainLoader(data, batch_size=4, seq_len=16, seed=1)
    b.load_state_dict({"position": 3, "seed": 1})
    for want in batches[3:]:
        got = b.next()
        assert got[0].equal(want[0]) and got[1].equal(want[1])
    x, y = batches[0]
    assert x.shape == (4, 16) and y[:, :-1].equal(x[:, 1:])  # targets are inputs shifted by one
    other = TrainLoader(data, batch_size=4, seq_len=16, seed=2).next()
    assert not other[0].equal(batches[0][0])


def test_val_batches_are_fixed_and_cover_the_text():
    data = np.arange(5_000)
    v1, v2 = val_batches(data, 3, 4, 16), val_batches(data, 3, 4, 16)
    assert len(v1) == 3 and all(a[0].equal(b[0]) for a, b in zip(v1, v2))
    assert v1[0][0][0, 0] == 0 and v1[-1][1][-1, -1] == 4999


def test_sources_txt_jsonl_and_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("alpha")
    rows = [json.dumps({"text": "beta"}), "", json.dumps({"text": "gamma"})]
    (tmp_path / "d" / "b.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "d" / "skip.csv").write_text("x")
    assert list(sources.documents(str(tmp_path / "d"), "train")) == ["alpha", "beta", "gamma"]
    (tmp_path / "bad.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:1: no string field 'text'"):
        list(sources.documents(str(tmp_path / "bad.jsonl"), "train"))
    (tmp_path / "broken.jsonl").write_text('{"text": \n')
    with pytest.raises(UserError, match=r"broken.jsonl:1: not valid JSON"):
        list(sources.documents(str(tmp_path / "broken.jsonl"), "train"))
    with pytest.raises(UserError, match="data.val: file not found: nowhere.txt"):
        list(sources.documents("nowhere.txt", "val"))
    (tmp_path / "e").mkdir()
    with pytest.raises(UserError, match="holds no .txt or .jsonl"):
        list(sources.documents(str(tmp_path / "e"), "train"))


def test_bundled_corpus_is_readable():
    first = next(sources.documents("bundled", "val"))
    assert isinstance(first, str) and len(first) > 1000
    assert sources.fingerprint("bundled", "train") != sources.fingerprint("bundled", "val")


def test_hugging_face_dataset_path_with_mocked_download(monkeypatch):
    """Only load_dataset (the download) is faked; parsing rows, split naming and errors are ours."""
    calls = []

    class FakeDataset:
        column_names = ["text", "id"]
        _fingerprint = "abc"

        def __iter__(self):
            return iter([{"text": "first doc", "id": 1}, {"text": "", "id": 2}, {"text": "second", "id": 3}])

    def load_dataset(name, split, streaming):
        calls.append((name, split, streaming))
        return FakeDataset()

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert list(sources.documents("hf:org/corpus", "train")) == ["first doc", "second"]
    assert list(sources.documents("hf:org/corpus", "val")) == ["first doc", "second"]
    assert list(sources.documents("hf:org/corpus:test", "val")) == ["first doc", "second"]
    assert calls == [("org/corpus", "train", True), ("org/corpus", "validation", True), ("org/corpus", "test", True)]
    with pytest.raises(UserError, match="no column 'body'"):
        list(sources.documents("hf:org/corpus", "train", text_field="body"))
    assert sources.fingerprint("hf:org/corpus", "train") != sources.fingerprint("hf:org/corpus:x", "train")
    FakeDataset.column_names = None  # streamed: the columns are known from the rows
    with pytest.raises(UserError, match="no column 'body'"):
        list(sources.documents("hf:org/corpus", "train", text_field="body"))
    assert [p for p, _, _ in sources.pieces("hf:org/corpus", "train")] == ["first doc", "second"]


def test_hugging_face_without_datasets_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(UserError, match=r"optional extra"):
        list(sources.documents("hf:org/corpus", "train"))


def test_prepare_caches_tokenizer_and_tokens(tiny_cfg, monkeypatch):
    cfg = tiny_cfg()
    first = data_mod.prepare(cfg, log=lambda *_: None)
    assert first.train.dtype == np.uint16 and int(first.train.max()) < cfg.model.vocab_size
    text = first.tokenizer.decode(np.asarray(first.val[:50]).tolist())
    assert text.startswith(Path(cfg.data.val).read_text()[:20])

    def fail(*a, **k):
        raise AssertionError("cache miss: retrained or re-tokenized")

    monkeypatch.setattr(tokenizer, "train_bpe", fail)
    monkeypatch.setattr(data_mod, "encode_pieces", fail)
    again = data_mod.prepare(cfg, log=lambda *_: None)
    assert np.array_equal(again.train, first.train)


def test_user_tokenizer_and_vocab_check(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    tok, path = data_mod.tokenizer_for(cfg, log=lambda *_: None)
    mine = tmp_path / "tokenizer.json"
    mine.write_text(path.read_text())
    assert data_mod.tokenizer_for(tiny_cfg(data__tokenizer=str(mine)), log=lambda *_: None)[1] == mine
    with pytest.raises(UserError, match="model.vocab_size"):
        data_mod.tokenizer_for(tiny_cfg(data__tokenizer=str(mine), model__vocab_size=100), log=lambda *_: None)
    with pytest.raises(UserError, match="data.tokenizer: file not found"):
        data_mod.tokenizer_for(tiny_cfg(data__tokenizer=str(tmp_path / "no.json")), log=lambda *_: None)


def test_split_digits_spells_a_number_with_the_same_digit_tokens_everywhere(corpus, tiny_cfg, tmp_path):
    docs = [*sources.documents(str(corpus["train"]), "train"), *(f"x = {n}\ny = {n}3 items\n{n}" for n in range(999))]
    plain, split = tokenizer.train_bpe(docs, 400), tokenizer.train_bpe(docs, 400, split_digits=True)
    for tok in (plain, split):  # both round-trip exactly
        text = "In 1999, 457 people\n  x=12\n>>> y = 3041\n"
        assert tok.decode(tok.encode(text).ids) == text

    def spelled(tok, text):
        return tok.encode(text).tokens

    assert spelled(split, " 457") == ["Ġ", "4", "5", "7"] and spelled(split, "457") == ["4", "5", "7"]
    assert spelled(split, "x=12") == ["x", "=", "1", "2"]
    assert spelled(plain, " 457") != ["Ġ", "4", "5", "7"]  # without it the merges join digits (the reason to split)
    assert all(len(t.lstrip("Ġ")) <= 1 for t in split.get_vocab() if any(c.isdigit() for c in t))
    # a config asks for it; it names its own tokenizer cache; a given tokenizer keeps its own rules
    tok, path = data_mod.tokenizer_for(tiny_cfg(data__split_digits=True), log=lambda *_: None)
    assert tok.encode(" 457").tokens == ["Ġ", "4", "5", "7"]
    assert path != data_mod.tokenizer_for(tiny_cfg(), log=lambda *_: None)[1]
    with pytest.raises(UserError, match=r"^data\.split_digits: .*given data\.tokenizer"):
        tiny_cfg(data__split_digits=True, data__tokenizer=str(path))


def test_split_names_makes_a_one_letter_name_one_token_wherever_it_stands(corpus, tiny_cfg, tmp_path):
    docs = [*sources.documents(str(corpus["train"]), "train"),
            *(f"x={n}\ny=x\nWhat is the value of y? It is {n}, a cat.\n >>> z = {n}" for n in range(300))]
    plain, split = tokenizer.train_bpe(docs, 400, True), tokenizer.train_bpe(docs, 400, True, split_names=True)
    text = "x=457\ny=x\nWhat is the value of y? a is I\n >>> z = 3, print(z)\n"
    for tok in (plain, split):
        assert tok.decode(tok.encode(text).ids) == text
    assert split.encode("x=457\ny=x").tokens == ["x", "=", "4", "5", "7", "Ċ", "y", "=", "x"]
    assert split.encode("the value of y?").tokens[-3:] == ["Ġ", "y", "?"]
    assert " Ġ z Ġ= " in " ".join(split.encode(">>> z = 3, print(z)").tokens)
    assert split.encode("print(z)").tokens[-3:] == ["(", "z", ")"]
    assert plain.encode(" y").tokens == ["Ġy"]  # without it ` y` is another token than `y` (the reason to split)
    assert split.encode(" the").tokens == plain.encode(" the").tokens == ["Ġthe"]  # longer words untouched
    assert all(split.encode(f"of {c}").tokens[-2:] == ["Ġ", c] for c in string.ascii_letters)
    # a config asks for it; it names its own tokenizer cache; a given tokenizer keeps its own rules
    tok, path = data_mod.tokenizer_for(tiny_cfg(data__split_names=True), log=lambda *_: None)
    assert tok.encode(" y").tokens == ["Ġ", "y"]
    assert path != data_mod.tokenizer_for(tiny_cfg(), log=lambda *_: None)[1]
    with pytest.raises(UserError, match=r"^data\.split_names: .*given data\.tokenizer"):
        tiny_cfg(data__split_names=True, data__tokenizer=str(path))


def test_unigram_entropy():
    assert data_mod.unigram_entropy(np.array([0, 1, 2, 3]), 8) == pytest.approx(np.log(4))
    assert data_mod.unigram_entropy(np.array([5, 5, 5]), 8) == pytest.approx(0.0)


def test_ranks_take_disjoint_slices_of_the_same_global_batch():
    data = np.arange(10_000) % 300
    whole = TrainLoader(data, batch_size=8, seq_len=16, seed=3)
    ranks = [TrainLoader(data, batch_size=8, seq_len=16, seed=3, rank=r, world=4) for r in range(4)]
    for _ in range(3):
        x, y = whole.next()
        parts = [r.next() for r in ranks]
        assert all(p[0].shape == (2, 16) for p in parts)
        assert torch.equal(torch.cat([p[0] for p in parts]), x) and torch.equal(torch.cat([p[1] for p in parts]), y)
