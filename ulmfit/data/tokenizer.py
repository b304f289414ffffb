"""Fast tokenization with exactly fastai's output (``Tokenizer`` with its default rules + spaCy blank English).

fastai's path spends most of its time outside spaCy's rules: a Python ``Token`` object and a fastcore
``compose`` call per token, pickled token lists between processes, and a spaCy cache that never works.
This path produces the same tokens with three changes:

1. fastai registers its special tokens (``xxbos``, ``xxmaj``, ...) as spaCy special cases. They are plain
   ASCII words that no prefix/suffix/infix rule splits, so they come out of spaCy as themselves anyway; but
   a special-case hit sets a per-document flag that switches spaCy's chunk cache off for the rest of the
   document (spaCy #1250), and every fastai document starts with ``xxbos``. Without them the cache works, so
   repeated chunks are not tokenized again. ``_tokenizer`` checks that each special token still comes out whole.
2. Tokens leave spaCy as one ``uint64`` array per document (``Doc.to_array(ORTH)``); strings are looked up,
   and fastai's post-rules applied, once per distinct token, not once per token.
3. Workers (one per core) return a distinct-token list plus small integer arrays, not lists of strings.

``bench/`` measures it against ``fastai.text.core.tokenize_df`` on all of IMDB and checks the tokens are equal.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, reduce
from typing import Callable, Sequence

import numpy as np
from fastai.text.core import defaults
from fastcore.basics import num_cpus

CHUNK = 1000  # documents per worker task: large enough to amortise pickling, small enough to balance


@dataclass
class TokenIds:
    """Tokenized documents: ``words[ids[offsets[i]:offsets[i+1]]]`` are document ``i``'s tokens."""

    words: list[str]
    ids: np.ndarray      # int32 indices into ``words``
    offsets: np.ndarray  # int64, n_docs + 1

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def counts(self) -> Counter:
        """How often each token occurs (what fastai's ``make_vocab`` builds a vocabulary from)."""
        return counts_of(self.words, np.bincount(self.ids, minlength=len(self.words)))

    def token_lists(self) -> list[list[str]]:
        words = self.words
        return [[words[i] for i in self.ids[s:e]] for s, e in zip(self.offsets[:-1], self.offsets[1:])]


def counts_of(words: Sequence[str], totals: np.ndarray) -> Counter:
    """``{word: count}`` of the words that occur (``totals[i]`` occurrences of ``words[i]``)."""
    return Counter({words[i]: int(totals[i]) for i in np.flatnonzero(totals)})


@lru_cache(maxsize=4)
def _tokenizer(lang: str):
    """spaCy's blank-``lang`` tokenizer, as fastai builds it minus the redundant special cases (see above)."""
    import spacy
    tok = spacy.blank(lang).tokenizer
    for special in defaults.text_spec_tok:
        got = [t.text for t in tok(special)]
        if got != [special]:  # would differ from fastai: fail instead of producing other tokens
            raise RuntimeError(f"spaCy splits the special token {special!r} into {got}; the fast tokenizer "
                               f"cannot match fastai for lang={lang!r}.")
    return tok


def _compose(fns: Sequence[Callable[[str], str]]) -> Callable[[str], str]:
    return lambda text: reduce(lambda t, f: f(t), fns, text)


def _tokenize_chunk(texts: Sequence[str], lang: str, rules: Sequence[Callable], post_rules: Sequence[Callable]
                    ) -> TokenIds:
    """Tokenize ``texts`` in this process; ids index this chunk's own distinct tokens."""
    from spacy.attrs import ORTH
    tok = _tokenizer(lang)
    pre = _compose(rules)
    arrays = [tok(pre(str(t))).to_array(ORTH) for t in texts]
    lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.uint64)
    hashes, inverse = np.unique(flat, return_inverse=True)
    strings, post = tok.vocab.strings, _compose(post_rules)
    words = [post(strings[int(h)]) for h in hashes]
    return TokenIds(words, inverse.astype(np.int32).reshape(-1), np.concatenate([[0], np.cumsum(lengths)]))


def _pool_context():
    """fork where it is safe: workers start in milliseconds and only run spaCy and regexes (no torch, no OpenMP).
    Not once a ``torch.distributed`` process group exists (rank 0 of a data-parallel run tokenizes inside it):
    its communication threads are running, and a child forked from a multithreaded process can deadlock before
    it starts (seen with forked DataLoader workers under DDP); spawned workers start from a clean interpreter."""
    import torch.distributed as dist
    in_group = dist.is_available() and dist.is_initialized()
    fork = "fork" in multiprocessing.get_all_start_methods() and not in_group
    return multiprocessing.get_context("fork" if fork else "spawn")


def tokenize_ids(texts: Sequence[str], lang: str = "en", rules: Sequence[Callable] | None = None,
                 post_rules: Sequence[Callable] | None = None, n_workers: int | None = None,
                 index: dict[str, int] | None = None) -> TokenIds:
    """fastai-identical tokens of ``texts`` (in order) as ids into a vocabulary of distinct tokens.

    ``index`` (token -> id), when given, is extended in place and the ids index it (so several corpus parts
    share one id space); ``words`` is then the full index in id order.
    """
    rules = list(defaults.text_proc_rules if rules is None else rules)
    post_rules = list(defaults.text_postproc_rules if post_rules is None else post_rules)
    n_workers = num_cpus() if n_workers is None else n_workers  # fastcore: the CPU affinity, else all cores
    chunks = [texts[i:i + CHUNK] for i in range(0, len(texts), CHUNK)]
    if n_workers <= 1 or len(chunks) <= 1:
        results = (_tokenize_chunk(c, lang, rules, post_rules) for c in chunks)
        return _merge(results, index)
    with ProcessPoolExecutor(min(n_workers, len(chunks)), mp_context=_pool_context()) as pool:
        results = pool.map(_tokenize_chunk, chunks, *([x] * len(chunks) for x in (lang, rules, post_rules)))
        return _merge(results, index)


def _merge(results, index: dict[str, int] | None) -> TokenIds:
    """Map every chunk's local ids into one shared index, keeping document order."""
    index = {} if index is None else index
    ids, lengths = [], []
    for r in results:
        local = np.fromiter((index.setdefault(w, len(index)) for w in r.words), dtype=np.int32, count=len(r.words))
        ids.append(local[r.ids])
        lengths.append(np.diff(r.offsets))
    flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)
    lengths_all = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    return TokenIds(list(index), flat, np.concatenate([[0], np.cumsum(lengths_all)]).astype(np.int64))


def tokenize(texts: Sequence[str], lang: str = "en", n_workers: int | None = None) -> list[list[str]]:
    """fastai-identical token lists (``tokenize_texts`` with default rules), in input order."""
    return tokenize_ids(list(texts), lang, n_workers=n_workers).token_lists()
