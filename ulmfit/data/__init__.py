"""Data layer: readers -> cached tokenization -> numericalized documents -> fastai DataLoaders."""

from __future__ import annotations

from typing import Any, Mapping

from ulmfit.data.readers import make_reader
from ulmfit.data.tokens import Docs, TokenizedCorpus, TokenizerSettings, build_vocab, holdout_split, \
    load_or_tokenize, numericalize

__all__ = ["Docs", "TokenizedCorpus", "TokenizerSettings", "build_vocab", "holdout_split", "lm_splits", "load_corpus",
           "numericalize", "make_reader"]


def load_corpus(data_cfg: Mapping[str, Any], tok_cfg: Mapping[str, Any], cache_dir: str) -> TokenizedCorpus:
    """Read (or fetch from the token cache) the corpus a data config describes."""
    settings = TokenizerSettings(lang=tok_cfg.get("lang", "en"), n_workers=tok_cfg.get("n_workers"))
    return load_or_tokenize(make_reader(data_cfg), settings, cache_dir)


def lm_splits(corpus: TokenizedCorpus, vocab: list[str], train_parts: list[str], valid_frac: float,
              seed: int) -> tuple[Docs, Docs]:
    """Numericalized LM training and validation documents.

    Uses the corpus's own ``valid`` part when it has one, else holds out ``valid_frac`` of the training
    documents (seeded), as fastai's ``RandomSplitter`` would.
    """
    train = Docs.concat(numericalize(corpus, p, vocab) for p in train_parts)
    if "valid" in corpus.parts and "valid" not in train_parts:
        return train, numericalize(corpus, "valid", vocab)
    keep, held = holdout_split(len(train), valid_frac, seed)
    return train.subset(keep), train.subset(held)
