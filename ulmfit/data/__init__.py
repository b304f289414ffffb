"""Data layer: readers -> cached tokenization -> numericalized documents -> splits -> fastai DataLoaders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ulmfit.data.portable import open_portable
from ulmfit.data.readers import make_reader
from ulmfit.data.splits import (TEST_SUBSET_SEED, classification_split, holdout_split, labelled_classes,
                                labelled_lm_splits, lm_splits, scored_test, split_of, subsample_test)
from ulmfit.data.streams import TokenStream
from ulmfit.data.subword import NOT_PORTABLE, SPACY
from ulmfit.data.tokens import Docs, TokenizedCorpus, TokenizerSettings, build_vocab, load_or_tokenize, numericalize
from ulmfit.distributed import main_process_first
from ulmfit.errors import UsageError

__all__ = ["TEST_SUBSET_SEED", "Docs", "TokenStream", "TokenizedCorpus", "TokenizerSettings", "build_vocab",
           "classification_split", "holdout_split", "labelled_classes", "labelled_lm_splits", "lm_splits",
           "load_corpus", "load_or_tokenize", "make_reader", "numericalize", "scored_test", "split_of",
           "subsample_test"]


def load_corpus(data_cfg: Mapping[str, Any], tok_cfg: Mapping[str, Any], cache_dir: str,
                sp_model: Path | None = None) -> TokenizedCorpus:
    """Read (or fetch from the token cache) the corpus a data config describes, in spaCy words or, with
    ``data.tokenizer=sentencepiece``, in the pieces of ``sp_model`` (the stage's: ``ulmfit.stages.common.sp_model``);
    with ``data.tokens``, the portable file's corpus (``ulmfit.data.portable``: no raw files, no spaCy)."""
    # .get: hand-written data configs (the Python API, experiments/) may lack the keys
    if (data_cfg.get("tokenizer") or SPACY) != SPACY and (sp_model is None or data_cfg.get("tokens")):
        raise UsageError(NOT_PORTABLE)
    with main_process_first():  # data-parallel runs: rank 0 fills the cache, the others read it
        if tokens := data_cfg.get("tokens"):
            return open_portable(tokens, cache_dir, data_cfg)
        return load_or_tokenize(make_reader(data_cfg), TokenizerSettings.from_config(tok_cfg, sp_model), cache_dir)
