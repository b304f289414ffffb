"""Tokenization matches fastai, is cached by fingerprint, and numericalizes against any vocab."""

from __future__ import annotations

import numpy as np
import pytest
from fastai.text.core import UNK, tokenize_texts

import ulmfit.data.tokenizer as tokenizer_mod
import ulmfit.data.tokens as tokens_mod
from ulmfit import UsageError
from ulmfit.data.readers import CsvReader, WikiTextReader
from ulmfit.data.splits import holdout_split
from ulmfit.data.tokens import (Docs, TokenizerSettings, build_vocab, load_or_tokenize,
                                numericalize)

SETTINGS = TokenizerSettings(n_workers=0)


@pytest.fixture
def csv_reader(tmp_path):
    (tmp_path / "train.csv").write_text('text,label\n"Hello World!! This is GREAT <br />stuff.",pos\n'
                                        'the cat and the dog,neg\n')
    (tmp_path / "test.csv").write_text("text,label\nA new zyzzyva word,pos\n")
    return CsvReader({"train": tmp_path / "train.csv", "test": tmp_path / "test.csv"})


def test_tokens_are_fastais(csv_reader, tmp_path):
    corpus = load_or_tokenize(csv_reader, SETTINGS, tmp_path / "cache")
    texts = csv_reader.read()["train"]["text"].tolist()
    expected = tokenize_texts(texts, n_workers=0)
    docs = corpus.part("train")
    assert [corpus.decode(docs.doc(i)) for i in range(len(docs))] == [list(t) for t in expected]
    assert corpus.decode(docs.doc(0))[:3] == ["xxbos", "xxmaj", "hello"]
    assert docs.labels == ["pos", "neg"]



def test_token_counts_and_vocab_ids_of_raw_texts(monkeypatch):
    """What predict does with new texts: tokens once, each model's vocab ids by one lookup per distinct token;
    the counts and size bench/predict.py reports, from the library."""
    from collections import Counter
    from ulmfit.data.tokens import vocab_lookup
    monkeypatch.setattr(tokenizer_mod, "CHUNK", 2)  # several chunks merged
    texts = ["the cat and the dog", "The new zyzzyva", "dog dog"]
    tok = SETTINGS.tokenize_ids(texts)
    lists = tokenizer_mod.tokenize(texts, n_workers=0)
    assert tok.token_lists() == lists and tok.n_tokens == sum(map(len, lists))
    assert tok.counts() == Counter(t for doc in lists for t in doc)
    vocab = ["xxunk", "xxpad", "xxbos", "the", "dog"]
    ids = vocab_lookup(tok.words, vocab)[tok.ids]
    assert ids.tolist() == [vocab.index(t) if t in vocab else 0 for doc in lists for t in doc]

HARD_TEXTS = [
    "", "   ", "\n\n", "xxmaj, xxbos. (xxup) xxunk's", "I don't know... it's 9:30 a.m. :) ;-) <3 #hashtag/slash",
    "WOW!!!!! This is sooooo GOOD GOOD GOOD good", "U.S.A. vs. the U.K. -- e-mail me at a@b.com or http://x.y/z?q=1",
    "Tabs\tand\u00a0non-breaking  spaces\r\nand <br /><br />html &amp; entities &#39;q&#39;",
    "Café naïve — “quotes” ‘single’ 🎬 emoji 12,000.50$ 3rd 1990s", "Mr. Smith's wife's dog can't won't shan't",
    "A" * 300 + " " + "ab" * 500, "x" * 5000,
]


@pytest.mark.parametrize("n_workers", [0, 2])
def test_fast_path_matches_fastai_on_hard_texts(n_workers, monkeypatch):
    monkeypatch.setattr(tokenizer_mod, "CHUNK", 3)
    expected = [list(t) for t in tokenize_texts(HARD_TEXTS, n_workers=0)]
    assert tokenizer_mod.tokenize(HARD_TEXTS, n_workers=n_workers) == expected


def test_workers_are_spawned_inside_a_process_group(tmp_path, monkeypatch):
    """Rank 0 of a data-parallel run tokenizes after the process group (and its threads) exists: forking then
    can deadlock, so the workers are spawned, with the same tokens."""
    import torch.distributed as dist
    monkeypatch.setattr(tokenizer_mod, "CHUNK", 3)
    expected = tokenizer_mod.tokenize(HARD_TEXTS, n_workers=0)
    assert tokenizer_mod._pool_context().get_start_method() == "fork"
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        assert tokenizer_mod._pool_context().get_start_method() == "spawn"
        assert tokenizer_mod.tokenize(HARD_TEXTS, n_workers=2) == expected
    finally:
        dist.destroy_process_group()
    assert tokenizer_mod._pool_context().get_start_method() == "fork"


def test_second_run_is_a_cache_hit_without_tokenizing(csv_reader, tmp_path, monkeypatch):
    first = load_or_tokenize(csv_reader, SETTINGS, tmp_path / "cache")
    assert not first.cache_hit
    monkeypatch.setattr(tokens_mod, "tokenize_ids", lambda *a, **k: pytest.fail("tokenized again"))
    monkeypatch.setattr(type(csv_reader), "read", lambda self: pytest.fail("read the raw files again"))
    second = load_or_tokenize(csv_reader, SETTINGS, tmp_path / "cache")
    assert second.cache_hit and second.fingerprint == first.fingerprint
    assert second.tokens == first.tokens
    np.testing.assert_array_equal(second.part("train").ids, first.part("train").ids)
    assert second.part("test").labels == ["pos"]


def test_fingerprint_follows_content_and_options(csv_reader, tmp_path):
    a = load_or_tokenize(csv_reader, SETTINGS, tmp_path / "cache")
    # n_workers does not change tokens: same key
    assert load_or_tokenize(csv_reader, TokenizerSettings(n_workers=1), tmp_path / "cache").cache_hit
    # a different text column or a changed file is a different corpus
    (tmp_path / "test.csv").write_text("text,label\nsomething else,neg\n")
    b = load_or_tokenize(csv_reader, SETTINGS, tmp_path / "cache")
    assert not b.cache_hit and b.fingerprint != a.fingerprint


def test_parallel_tokenization_is_identical(tmp_path, mini_wikitext, monkeypatch):
    reader = WikiTextReader(mini_wikitext)
    monkeypatch.setattr(tokenizer_mod, "CHUNK", 7)  # several worker tasks, merged in order
    serial = load_or_tokenize(reader, TokenizerSettings(n_workers=0), tmp_path / "c1")
    parallel = load_or_tokenize(reader, TokenizerSettings(n_workers=2), tmp_path / "c2")
    assert serial.tokens == parallel.tokens
    np.testing.assert_array_equal(serial.part("train").ids, parallel.part("train").ids)


def test_vocab_and_numericalize(csv_reader, tmp_path):
    corpus = load_or_tokenize(csv_reader, SETTINGS, tmp_path / "cache")
    vocab = build_vocab(corpus, ["train"], max_vocab=60000, min_freq=2)
    assert vocab[:2] == [UNK, "xxpad"] and len(vocab) % 8 == 0 and "the" in vocab
    assert "zyzzyva" not in vocab
    test = numericalize(corpus, "test", vocab)
    words = corpus.decode(corpus.part("test").ids)
    assert [vocab[i] if words[k] in vocab else words[k] for k, i in enumerate(test.ids)] == words
    assert test.ids[words.index("zyzzyva")] == 0  # unknown -> xxunk
    with pytest.raises(UsageError, match="no 'unsup' part"):
        numericalize(corpus, "unsup", vocab)


def test_docs_subset_concat_and_holdout():
    docs = Docs(np.arange(10), np.array([0, 3, 5, 10]), ["a", "b", "c"])
    sub = docs.subset([2, 0])
    assert sub.ids.tolist() == [5, 6, 7, 8, 9, 0, 1, 2] and sub.labels == ["c", "a"]
    both = Docs.concat([docs, sub])
    assert len(both) == 5 and both.n_tokens == 18
    keep, held = holdout_split(100, 0.1, seed=0)
    assert len(held) == 10 and set(keep).isdisjoint(held) and len(keep) + len(held) == 100
    assert holdout_split(100, 0.1, seed=0)[1].tolist() == held.tolist()
