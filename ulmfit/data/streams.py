"""Language-model corpora as spans of the token cache's memory-mapped arrays: bounded by disk, not RAM.

A ``TokenStream`` never copies token ids: documents are (part, start, length) spans of the cached flat
arrays, and the vocabulary lookup (cached id -> vocab id) is applied only to the few thousand tokens of
each batch. Selecting documents (a held-out split) or joining parts (IMDB train + unsup) only touches
the small per-document arrays, so a 100M-token corpus costs ~17 bytes per document of RAM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ulmfit.data.tokens import TokenizedCorpus, vocab_lookup
from ulmfit.errors import UsageError


@dataclass
class TokenStream:
    """Documents of one or more cached parts, numericalized lazily against a vocabulary."""

    sources: list[np.ndarray]  # one flat cached-id array (memmap) per part
    source: np.ndarray         # int16: which ``sources`` array each document lives in
    starts: np.ndarray         # int64: first token of each document in its source
    lengths: np.ndarray        # int64: tokens per document
    lookup: np.ndarray         # int64: cached id -> vocab id (unknown tokens -> 0, xxunk)

    @classmethod
    def from_parts(cls, corpus: TokenizedCorpus, parts: Sequence[str], vocab: Sequence[str]) -> "TokenStream":
        docs = [corpus.part(p) for p in parts]
        return cls(sources=[d.ids for d in docs],
                   source=np.concatenate([np.full(len(d), k, dtype=np.int16) for k, d in enumerate(docs)]),
                   starts=np.concatenate([np.asarray(d.offsets[:-1], dtype=np.int64) for d in docs]),
                   lengths=np.concatenate([d.lengths.astype(np.int64) for d in docs]),
                   lookup=vocab_lookup(corpus.tokens, vocab))

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    def subset(self, idx: Sequence[int] | np.ndarray) -> "TokenStream":
        """The documents at ``idx``, in that order (no token is copied)."""
        idx = np.asarray(idx, dtype=np.int64)
        return TokenStream(self.sources, self.source[idx], self.starts[idx], self.lengths[idx], self.lookup)

    def sample(self, n_tokens: int, seed: int) -> "TokenStream":
        """A seeded random subset of whole documents holding at least ``n_tokens`` tokens (all of them when the
        stream has fewer): a token budget, e.g. for LM fine-tuning on part of a large corpus."""
        order = np.random.default_rng(seed).permutation(len(self))
        k = int(np.searchsorted(np.cumsum(self.lengths[order]), n_tokens)) + 1
        return self.subset(np.sort(order[:k]))

    def doc(self, i: int) -> np.ndarray:
        src = self.sources[self.source[i]]
        return self.lookup[src[self.starts[i]:self.starts[i] + self.lengths[i]]]

    def ends(self, order: np.ndarray) -> np.ndarray:
        """Where each document of ``order`` ends in their concatenation (computed once per epoch by loaders)."""
        return np.cumsum(self.lengths[order])

    def gather(self, positions: np.ndarray, order: np.ndarray, backwards: bool = False,
               ends: np.ndarray | None = None) -> np.ndarray:
        """Vocab ids at ``positions`` of the stream made by concatenating the documents in ``order``
        (each document reversed when ``backwards``); ``ends``: ``self.ends(order)``, if already known."""
        ends = self.ends(order) if ends is None else ends
        d = np.searchsorted(ends, positions, side="right")  # index into order
        if d.size and d.max() >= len(order):
            raise IndexError("position past the end of the stream")
        doc = order[d]
        within = positions - (ends[d] - self.lengths[doc])
        if backwards:
            within = self.lengths[doc] - 1 - within
        at = self.starts[doc] + within
        out = np.empty(positions.shape, dtype=np.int64)
        which = self.source[doc]
        for k in np.unique(which):
            mask = which == k
            out[mask] = self.sources[k][at[mask]]
        return self.lookup[out]


def within_budget(stream: TokenStream, budget: int | None, seed: int) -> TokenStream:
    """``stage.lm_tokens``: a seeded subset of whole documents with at least ``budget`` tokens (None: all)."""
    if budget is None:
        return stream
    if not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0:
        raise UsageError(f"stage.lm_tokens={budget!r}: give a positive number of tokens (e.g. 8000000), "
                         f"or null for every training document.")
    return stream.sample(budget, seed)


def check_lm_size(stream: TokenStream, bs: int, what: str) -> None:
    if stream.n_tokens <= bs:
        raise UsageError(f"The {what} LM corpus has {stream.n_tokens} tokens, too few for batch size {bs} "
                         f"(each of the {bs} rows needs at least one token). Use more text or lower the batch size.")
