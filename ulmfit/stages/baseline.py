"""Baseline stages ``tfidf`` and ``nbsvm``: the same data config, tokens, splits, metrics and store entry
format as ``classify``, with an sklearn pipeline instead of the AWD-LSTM.

fastai tokens (from the shared token cache) -> train/valid split of ``classify`` -> sklearn pipeline ->
valid + test metrics -> store entry ``<tfidf|nbsvm>/<run>`` (metrics, config, lineage; no weights).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ulmfit import tracking
from ulmfit.baselines import make_baseline
from ulmfit.data import labelled_classes, load_corpus, scored_test, split_of
from ulmfit.data.tokens import Docs, TokenizedCorpus
from ulmfit.evaluation import classification_metrics
from ulmfit.report import print_table
from ulmfit.stages.common import open_store
from ulmfit.store import Entry


def joined_tokens(corpus: TokenizedCorpus, docs: Docs) -> list[str]:
    tokens = np.asarray(corpus.tokens, dtype=object)
    return [" ".join(tokens[docs.doc(i)]) for i in range(len(docs))]


def run_baseline(cfg: DictConfig, stage: str) -> Entry:
    store, name = open_store(cfg, stage)
    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache)
    classes = labelled_classes(corpus)
    train_all = corpus.part("train")
    keep, held = split_of(corpus, cfg.data, cfg.seed)
    texts = joined_tokens(corpus, train_all)
    y = np.array([classes.index(c) for c in train_all.labels])
    pipe = make_baseline(stage, OmegaConf.to_container(cfg.stage.params), cfg.seed)
    t0 = time.perf_counter()
    pipe.fit([texts[i] for i in keep], y[keep])
    seconds = time.perf_counter() - t0

    def evaluate(docs_texts: list[str], targets: np.ndarray) -> dict[str, Any]:
        return classification_metrics(pipe.predict_proba(docs_texts), targets, classes)

    metrics: dict[str, Any] = {"valid_accuracy": evaluate([texts[i] for i in held], y[held])["accuracy"]}
    if "test" in corpus.parts:
        test = scored_test(corpus.part("test"), cfg.data, classes)
        report = evaluate(joined_tokens(corpus, test), np.array([classes.index(c) for c in test.labels]))
        metrics.update({"test_" + k: v for k, v in report.items()})
    metrics.update({"train_seconds": round(seconds, 2), "n_train": int(len(keep)), "n_valid": int(len(held)),
                    "n_test": len(test) if "test" in corpus.parts else 0,
                    "n_features": int(len(pipe[0].vocabulary_)), "classes": classes})
    lineage = {"parent": None, "data": {"fingerprint": corpus.fingerprint, "format": cfg.data.format,
                                        "parts": ["train"], "n_train": int(len(keep)), "n_valid": int(len(held)),
                                        "n_test": metrics["n_test"]}}
    with store.create(stage, name, lineage) as w:
        w.save_json("metrics.json", metrics)
        w.save_config(cfg)
    entry = store.get(stage, name)
    tracking.current().log_summary(metrics)
    print_table(f"{stage} -> {entry.path}", metrics)
    return entry
