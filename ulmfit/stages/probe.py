"""Stage ``probe``: a linear probe of an LM's encoder -- is it the encoder or the fine-tuning recipe that limits
accuracy?

load parent encoder (``lm_finetune`` on this data, or any ``pretrain`` LM) -> labelled texts with the parent's
vocab -> the frozen encoder's [last, max, mean] pooling of its last layer (the classifier head's input, fastai's
``masked_concat_pool``) -> standardised features -> logistic regression with C chosen by cross-validated
log-loss (as the baselines choose theirs) on the training split -> valid and test metrics -> store entry ``probe/<run>`` (metrics, config, lineage; no weights).

Same splits, seeds and metrics as ``classify`` and the baselines, so the three compare directly.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from fastai.torch_core import noop
from omegaconf import DictConfig

from ulmfit.data import labelled_classes, load_corpus, numericalize, scored_test, split_of
from ulmfit.data.loaders import clas_dataloaders, clas_loader
from ulmfit.data.tokens import Docs
from ulmfit.directions import backwards_flag, check_direction
from ulmfit.errors import UsageError
from ulmfit.evaluation import classification_metrics
from ulmfit.models import build_classifier, classifier_info
from ulmfit.hardware import resolve_hardware
from ulmfit.options import PROBE_PARENT_STAGES
from ulmfit.stages.common import (data_identity, find_parent, lineage, open_store, save_entry, subword_model,
                                  tokenizer_kind)
from ulmfit.store import Entry
from ulmfit.tasks import CLASSIFICATION, Task
from ulmfit.training import clas_learner, seed_everything
from ulmfit.weights import load_encoder

log = logging.getLogger(__name__)
STAGE = "probe"
PARENT_STAGES = PROBE_PARENT_STAGES


def pooled_features(learn, docs: Docs, bs: int, bptt: int, backwards: bool) -> np.ndarray:
    """The encoder's concat pooling ([last, max, mean] of its last layer's outputs, or of every layer's with
    ``model.head.pool_layers=all``) for ``docs``, in their order: the classifier with an empty head
    (``PoolingLinearClassifier.layers``) predicts exactly that."""
    dl = clas_loader(docs, [0] * len(docs), bs, bptt, shuffle=False, device=learn.dls.device, backwards=backwards)
    with learn.no_bar():
        feats, _ = learn.get_preds(dl=dl, act=noop)
    return feats.float().numpy()


def run(cfg: DictConfig) -> Entry:
    if cfg.stage.parent_stage not in PARENT_STAGES:
        raise UsageError(f"stage.parent_stage={cfg.stage.parent_stage!r}; a probe needs an encoder: use one of "
                         f"{', '.join(PARENT_STAGES)}.")
    if (task := Task.of_data(cfg.data).name) != CLASSIFICATION:
        raise UsageError(f"stage=probe fits a logistic regression to one class per text; data.task={task} has none: "
                         f"compare stage=classify with stage=tfidf instead.")
    backwards = backwards_flag(cfg, STAGE)
    store, name = open_store(cfg, STAGE)
    data = data_identity(cfg.data, cfg.tokenizer)
    parent = find_parent(store, cfg.stage.parent_stage, cfg.stage.parent,
                         data if cfg.stage.parent_stage == "lm_finetune" else None, backwards, tokenizer_kind(cfg))
    check_direction(parent, backwards)
    sp_model = subword_model(cfg, parent, ["train"])  # data.tokenizer=sentencepiece: the parent's model
    seed_everything(cfg.seed)
    device, _ = resolve_hardware(cfg.train)

    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache, sp_model)
    classes = labelled_classes(corpus)
    docs = numericalize(corpus, "train", parent.vocab)
    keep, held = split_of(corpus, cfg.data, cfg.data_seed)
    train, valid = docs.subset(keep), docs.subset(held)
    test = scored_test(numericalize(corpus, "test", parent.vocab), cfg.data, classes) if "test" in corpus.parts \
        else None

    info = classifier_info(parent.model_info, cfg.model.head, classes, cfg.train.drop_mult, cfg.train.bptt)
    model = build_classifier(info)
    load_encoder(parent, model)
    model[1].layers = torch.nn.Sequential()  # no head: the pooled features are the output
    dls = clas_dataloaders(train, valid, classes, parent.vocab, cfg.train.eval_bs, cfg.train.bptt, device,
                           backwards, eval_bs=cfg.train.eval_bs)
    precision = "fp32"  # features in fp32: the figures of one precision
    learn = clas_learner(dls, model, cfg.train, precision)
    t0 = time.perf_counter()
    feats = {part: pooled_features(learn, d, cfg.train.eval_bs, cfg.train.bptt, backwards)
             for part, d in (("train", train), ("valid", valid), ("test", test)) if d is not None}
    feature_seconds = time.perf_counter() - t0
    log.info("probe: parent %s, %d features, %d train / %d valid docs", parent.ref, feats["train"].shape[1],
             len(train), len(valid))

    index = {c: i for i, c in enumerate(classes)}
    y = {part: np.array([index[c] for c in d.labels]) for part, d in (("train", train), ("valid", valid),
                                                                         ("test", test)) if d is not None}
    folds = int(min(cfg.stage.cv_folds, np.bincount(y["train"]).min()))
    if folds < 2:
        raise UsageError(f"The probe's cross-validation needs at least 2 training texts of every class; the "
                         f"smallest class has {np.bincount(y['train']).min()}. Use more labels (data.n_train).")
    from sklearn.linear_model import LogisticRegressionCV  # here: only this stage loads sklearn's models
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    t0 = time.perf_counter()
    probe = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=list(cfg.stage.Cs), cv=folds,
                                                                 scoring="neg_log_loss", max_iter=cfg.stage.max_iter))
    probe.fit(feats["train"], y["train"])
    fit_seconds = time.perf_counter() - t0

    metrics = {"valid_accuracy": classification_metrics(probe.predict_proba(feats["valid"]), y["valid"],
                                                         classes)["accuracy"]}
    if test is not None:
        report = classification_metrics(probe.predict_proba(feats["test"]), y["test"], classes)
        metrics.update({"test_" + k: v for k, v in report.items()})
    metrics.update({"C": float(probe[-1].C_[0]), "cv_folds": folds, "n_features": int(feats["train"].shape[1]),
                    "feature_seconds": round(feature_seconds, 1), "train_seconds": round(fit_seconds, 2),
                    "n_train": len(train), "n_valid": len(valid), "n_test": len(test) if test is not None else 0,
                    "classes": classes})
    taken = {"parts": ["train"], "n_train": len(train), "n_valid": len(valid), "n_test": metrics["n_test"]}
    return save_entry(store, STAGE, name, cfg, metrics=metrics,
                      lineage=lineage(cfg, corpus, taken, parent=parent, precision=precision, learn=learn),
                      sp_model=sp_model)
