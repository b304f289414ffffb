"""LM batches streamed from the token cache equal fastai's ``LMDataLoader`` batches, without copying the corpus."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastai.text.data import LMDataLoader

from ulmfit import UsageError
from ulmfit.data import TokenizerSettings, build_vocab, lm_splits, load_or_tokenize, numericalize
from ulmfit.data.loaders import lm_loader
from ulmfit.data.readers import WikiTextReader
from ulmfit.data.streams import TokenStream


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, mini_wikitext):
    return load_or_tokenize(WikiTextReader(mini_wikitext), TokenizerSettings(n_workers=0),
                            tmp_path_factory.mktemp("cache"))


def _batches(dl):
    return [(x.clone(), y.clone()) for x, y in dl]


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize("bs,bptt", [(4, 7), (3, 50)])
def test_stream_batches_equal_fastai_lmdataloader(corpus, backwards, bs, bptt):
    vocab = build_vocab(corpus, ["train"], 60000, 2)
    docs = numericalize(corpus, "train", vocab)
    tensors = [torch.as_tensor(docs.doc(i), dtype=torch.long) for i in range(len(docs))]
    if backwards:
        tensors = [t.flip(0) for t in tensors]
    ours = _batches(lm_loader(TokenStream.from_parts(corpus, ["train"], vocab), bs, bptt, False, torch.device("cpu"),
                              backwards))
    theirs = _batches(LMDataLoader(tensors, lens=docs.lengths.tolist(), bs=bs, seq_len=bptt, shuffle=False))
    assert len(ours) == len(theirs) > 1
    for (x, y), (fx, fy) in zip(ours, theirs):
        assert torch.equal(x, fx) and torch.equal(y, fy)


def test_shuffle_reorders_documents_and_keeps_every_token(corpus):
    vocab = build_vocab(corpus, ["train"], 60000, 2)
    stream = TokenStream.from_parts(corpus, ["train"], vocab)
    dl = lm_loader(stream, 2, 10, True, torch.device("cpu"))
    first, second = _batches(dl), _batches(dl)
    flat = lambda bs: torch.cat([x for x, _ in bs], 1)  # noqa: E731
    assert not torch.equal(flat(first), flat(second))  # a new document order per epoch
    n = dl.bl * 2 - 2 * 0  # every row's inputs: bl tokens
    assert flat(first).numel() == n
    # the same multiset of tokens as the corpus minus at most bs+1 dropped at the end
    all_ids = np.concatenate([stream.doc(i) for i in range(len(stream))])
    counts = np.bincount(all_ids, minlength=len(vocab)) - np.bincount(flat(first).flatten().numpy(), minlength=len(vocab))
    assert counts.min() >= 0 and counts.sum() <= 2 + 1


def test_holdout_split_and_parts_are_views(corpus):
    vocab = build_vocab(corpus, ["train"], 60000, 2)
    train, valid = lm_splits(corpus, vocab, ["train"], 0.1, seed=0)  # corpus has a valid part
    assert valid.n_tokens == corpus.part("valid").n_tokens
    both = TokenStream.from_parts(corpus, ["train", "test"], vocab)
    assert both.n_tokens == corpus.part("train").n_tokens + corpus.part("test").n_tokens
    assert all(isinstance(s, np.memmap) for s in both.sources)  # tokens stay on disk
    sub = both.subset([len(both) - 1, 0])
    np.testing.assert_array_equal(sub.doc(1), numericalize(corpus, "train", vocab).doc(0))
    np.testing.assert_array_equal(sub.doc(0), numericalize(corpus, "test", vocab).doc(len(corpus.part("test")) - 1))


def test_corpus_smaller_than_a_batch_is_a_usage_error(corpus):
    vocab = build_vocab(corpus, ["train"], 60000, 2)
    tiny = TokenStream.from_parts(corpus, ["train"], vocab).subset([0])
    with pytest.raises(UsageError, match="too few for batch size"):
        lm_loader(tiny, tiny.n_tokens + 5, 10, True, torch.device("cpu"))


def test_sample_is_a_seeded_token_budget_of_whole_documents(corpus):
    vocab = build_vocab(corpus, ["train"], 60000, 2)
    train = TokenStream.from_parts(corpus, ["train"], vocab)
    budget = train.n_tokens // 3
    a, b, c = train.sample(budget, seed=1), train.sample(budget, seed=1), train.sample(budget, seed=2)
    assert budget <= a.n_tokens < budget + a.lengths.max()  # whole documents, just past the budget
    np.testing.assert_array_equal(a.starts, b.starts)      # same seed, same documents
    assert not np.array_equal(a.starts, c.starts)
    assert set(a.starts.tolist()) <= set(train.starts.tolist())
    assert train.sample(10 * train.n_tokens, seed=1).n_tokens == train.n_tokens  # more than there is: all
