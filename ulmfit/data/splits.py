"""Which documents train, validate and test: LM hold-outs, the labelled split ``classify`` and the baselines
share, and the test subset they are scored on. Every split is seeded, so methods and reruns see the same texts."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ulmfit.data.streams import TokenStream
from ulmfit.data.tokens import Docs, TokenizedCorpus, build_vocab
from ulmfit.errors import UsageError
from ulmfit.tasks import Task


def holdout_split(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, held-out) document indices, reproducible from ``seed``."""
    if not 0 < frac < 1:
        raise UsageError(f"valid_frac must be between 0 and 1, got {frac}.")
    perm = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, int(round(n * frac)))
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def lm_splits(corpus: TokenizedCorpus, vocab: list[str], train_parts: list[str], valid_frac: float,
              seed: int) -> tuple[TokenStream, TokenStream]:
    """LM training and validation documents, streamed from the token cache (nothing copied into RAM).

    Uses the corpus's own ``valid`` part when it has one, else holds out ``valid_frac`` of the training
    documents (seeded), as fastai's ``RandomSplitter`` would.
    """
    train = TokenStream.from_parts(corpus, train_parts, vocab)
    if "valid" in corpus.parts and "valid" not in train_parts:
        return train, TokenStream.from_parts(corpus, ["valid"], vocab)
    keep, held = holdout_split(len(train), valid_frac, seed)
    return train.subset(keep), train.subset(held)


def labelled_lm_splits(corpus: TokenizedCorpus, data_cfg: Mapping[str, Any], seed: int
                       ) -> tuple[TokenStream, TokenStream, list[str]]:
    """LM train/valid documents and vocabulary from the labelled texts ``classify`` trains on (the same seeded
    ``data.n_train`` subset and hold-out), for "supervised" ULMFiT runs whose LM sees nothing else."""
    keep, held = split_of(corpus, data_cfg, seed)
    vocab = build_vocab(corpus, ["train"], data_cfg["max_vocab"], data_cfg["min_freq"], docs=keep)
    stream = TokenStream.from_parts(corpus, ["train"], vocab)
    return stream.subset(keep), stream.subset(held), vocab


def classification_split(corpus: TokenizedCorpus, valid_frac: float, seed: int, n_train: int | None = None,
                         n_valid: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) indices into the labelled ``train`` part, shared by ``classify`` and the baselines.

    ``n_train`` is a label budget: a seeded subset of that many labelled documents (sample-efficiency runs), of
    which ``valid_frac`` are held out for validation, so the validation that chooses epochs and baseline settings
    is paid for with the same labels (without ``n_train``, ``valid_frac`` of all of them). Every method sees
    exactly the same texts. ``n_valid`` validates on a seeded subset of the held-out documents (cheaper epochs
    on large sets); the training documents do not change with it.
    """
    n = len(corpus.part("train"))
    pool = np.arange(n)
    if n_train:
        if n_train > n:
            raise UsageError(f"data.n_train={n_train} but the training part has only {n} labelled texts; lower "
                             f"data.n_train.")
        pool = np.sort(np.random.default_rng(seed).permutation(n)[:n_train])
    keep, held = holdout_split(len(pool), valid_frac, seed)
    keep, held = pool[keep], pool[held]
    if n_valid:
        held = np.sort(np.random.default_rng(seed + 1).permutation(held)[:n_valid])
    return keep, held


def split_of(corpus: TokenizedCorpus, data_cfg: Mapping[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``classification_split`` with the data config's ``valid_frac``, ``n_train`` and ``n_valid``."""
    # .get: only labelled corpora's data configs have n_train/n_valid/n_test (lm_finetune's lm_only_labelled may
    # split any corpus's train part)
    for key in ("n_train", "n_valid", "n_test"):
        if (data_cfg.get(key) or 0) < 0:
            raise UsageError(f"data.{key}={data_cfg.get(key)} is negative; use a count of texts, or null for all.")
    return classification_split(corpus, data_cfg["valid_frac"], seed, data_cfg.get("n_train"), data_cfg.get("n_valid"))


TEST_SUBSET_SEED = 0  # one fixed draw: every method and seed is scored on the same test documents


def subsample_test(docs: Docs, n_test: int | None) -> Docs:
    """The test documents to score: ``docs`` itself, or a fixed seeded subset of ``n_test`` of them
    (``data.n_test``, for cheaper evaluation in many-run experiments)."""
    if not n_test or n_test >= len(docs):
        return docs  # no copy of a full test set
    return docs.subset(np.sort(np.random.default_rng(TEST_SUBSET_SEED).permutation(len(docs))[:n_test]))


def scored_test(docs: Docs, data_cfg: Mapping[str, Any], classes: list[str], task: Task = Task()) -> Docs:
    """The test documents a classifier is scored on (``subsample_test`` with ``data.n_test``); fails when a test
    label cannot be read as ``task``'s target or never occurs in training, since no model could predict it."""
    docs = subsample_test(docs, data_cfg["n_test"])
    task.targets(docs.labels, classes, "test")
    return docs


def labelled_classes(corpus: TokenizedCorpus, task: Task = Task()) -> list[str]:
    """The sorted class (label) names of the ``train`` part, ``[]`` for a regression (``Task.classes``); fails
    unless every text has a target of the task and there are at least two classes."""
    return task.classes(corpus.part("train").labels, "the 'train' part")
