"""Stage 3: the target-task classifier (ULMFiT §3.3).

load parent encoder (``lm_finetune``, or ``pretrain`` to skip fine-tuning, or none) -> labelled texts with the
parent's vocab -> concat-pooling head -> gradual unfreezing with discriminative LRs and STLR in each phase ->
test accuracy, error, per-class metrics, confusion matrix -> store entry ``classify/<run>``. With ``data.task``
multilabel or regression, the head, loss, metrics and decisions are the task's (``ulmfit.tasks``).

``direction=both``: ``classify/<run>-bwd`` from the parent's backward model, then ``classify/<run>`` from the
parent, on the same split with the same seeds; the forward entry's ``directions`` metrics hold forward, backward
and their averaged-probability ensemble on validation and test.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from ulmfit.data import build_vocab, labelled_classes, load_corpus, numericalize, scored_test, split_of
from ulmfit.data.loaders import clas_dataloaders
from ulmfit.data.tokens import Docs, TokenizedCorpus
from ulmfit.directions import BACKWARD, BOTH, FORWARD, backwards_flag, check_direction
from ulmfit.errors import UsageError
from ulmfit.distributed import is_main_process
from ulmfit.evaluation import choose_threshold, ensemble_report
from ulmfit.inference import Classifier, docs_scores
from ulmfit.models import build_classifier, classifier_info, model_info
from ulmfit.hardware import resolve_hardware
from ulmfit.options import AUTO, CLASSIFY_PARENT_STAGES
from ulmfit.stages.common import (data_identity, direction_runs, find_parent, lineage, open_run, save_entry,
                                  subword_model, tokenizer_kind)
from ulmfit.store import Entry
from ulmfit.tasks import CLASSIFICATION, MULTILABEL, Task
from ulmfit.precision import scoring_in_fp32
from ulmfit.training import check_monitor, clas_learner, fit_phases, kept_history, seed_everything
from ulmfit.weights import load_encoder

log = logging.getLogger(__name__)
STAGE = "classify"
PARENT_STAGES = CLASSIFY_PARENT_STAGES


def run(cfg: DictConfig) -> Entry:
    if cfg.stage.parent_stage not in PARENT_STAGES:
        raise UsageError(f"stage.parent_stage={cfg.stage.parent_stage!r}; use one of {', '.join(PARENT_STAGES)}.")
    if cfg.train.epochs == AUTO:
        raise UsageError("train.epochs=auto sizes language-model training; give the classifier a number of epochs "
                         "(e.g. train.epochs=4; train.patience stops it earlier).")
    task = Task.of_data(cfg.data)
    check_monitor(cfg.train, task.monitors)
    if cfg.direction == BOTH and task.name != CLASSIFICATION:
        raise UsageError(f"direction=both scores forward+backward ensembles of classes; for data.task={task.name} "
                         f"train direction=forward and direction=backward, then average them with stage=predict "
                         f"or stage=evaluate (stage.models=[<forward>,<backward>]).")
    if cfg.direction != BOTH:
        return _run(cfg)
    data = data_identity(cfg.data, cfg.tokenizer)
    parent_stage = None if cfg.stage.parent_stage == "none" else cfg.stage.parent_stage
    (bwd_cfg, bwd), (fwd_cfg, _) = direction_runs(cfg, STAGE, parent_stage,
                                                  data if parent_stage == "lm_finetune" else None)
    bwd = bwd or _run(bwd_cfg)
    entry = _run(fwd_cfg, pair=bwd)
    if entry is not None:
        _print_directions(entry.metrics["directions"])
    return entry


def _run(cfg: DictConfig, pair: Entry | None = None) -> Entry:
    """One classifier, in one direction; ``pair``: the backward classifier this forward one is scored with."""
    backwards = backwards_flag(cfg, STAGE)
    store, name, checkpoint, resume = open_run(cfg, STAGE)
    data = data_identity(cfg.data, cfg.tokenizer)
    # a fine-tuned LM must have been fine-tuned on this corpus; any general-domain (pretrain) LM fits
    fits = data if cfg.stage.parent_stage == "lm_finetune" else None
    parent = None if cfg.stage.parent_stage == "none" else find_parent(store, cfg.stage.parent_stage, cfg.stage.parent,
                                                                        fits, backwards, tokenizer_kind(cfg))
    if parent is not None:
        check_direction(parent, backwards)
    sp_model = subword_model(cfg, parent, ["train"])  # the parent's, or (no parent) trained on the texts
    seed_everything(cfg.seed)
    device, precision = resolve_hardware(cfg.train)

    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache, sp_model)
    task = Task.of_data(cfg.data)
    classes = labelled_classes(corpus, task)
    vocab = parent.vocab if parent else build_vocab(corpus, ["train"], cfg.data.max_vocab, cfg.data.min_freq)
    docs = numericalize(corpus, "train", vocab)
    keep, held = split_of(corpus, cfg.data, cfg.data_seed)
    train, valid = docs.subset(keep), docs.subset(held)
    dls = clas_dataloaders(train, valid, classes, vocab, cfg.train.bs, cfg.train.bptt, device, backwards,
                           eval_bs=cfg.train.eval_bs, task=task)

    encoder_info = parent.model_info if parent else model_info(cfg.model, len(vocab), 1.0, backwards)
    info = classifier_info(encoder_info, cfg.model.head, classes, cfg.train.drop_mult, cfg.train.bptt, task,
                           task.y_range(task.targets(train.labels, classes, "the training texts")))
    model = build_classifier(info)
    if parent is not None:
        load_encoder(parent, model)
    log.info("classify: parent %s, %d train / %d valid docs, %d classes", parent.ref if parent else "none",
             len(train), len(valid), len(classes))

    learn = clas_learner(dls, model, cfg.train, precision, task)
    seconds, phases = fit_phases(learn, cfg.train, checkpoint=checkpoint, resume=resume)
    if not is_main_process():  # data-parallel run: rank 0 evaluates and writes the entry
        return None

    kept = kept_history(phases, learn.kept_epoch)  # the best epoch's weights are the ones scored and saved
    metrics = {"valid_accuracy": float(kept.get("accuracy", float("nan"))), "valid_loss": float(kept["valid_loss"]),
               "kept_epoch": learn.kept_epoch}
    test = scored_test(numericalize(corpus, "test", vocab), cfg.data, classes, task) if "test" in corpus.parts \
        else None
    scored = {"valid": valid, **({"test": test} if test is not None else {})}
    with scoring_in_fp32(learn):  # the validation texts for a pair's figures, and another task's (below)
        probs = {part: docs_scores(learn, docs, cfg.train.eval_bs, cfg.train.bptt, backwards, task)
                 for part, docs in scored.items() if part == "test" or pair is not None or task.name != CLASSIFICATION}
    threshold = None
    if task.name != CLASSIFICATION:  # its figures, and a multilabel threshold, from the kept epoch's predictions
        y_valid = task.targets(valid.labels, classes, "validation")
        threshold = choose_threshold(probs["valid"], y_valid) if task.name == MULTILABEL else None
        valid_report = task.headline(task.report(probs["valid"], y_valid, classes, threshold))
        metrics = {**{f"valid_{k}": v for k, v in valid_report.items()}, "valid_loss": metrics["valid_loss"],
                   "kept_epoch": learn.kept_epoch, **({"threshold": threshold} if threshold is not None else {})}
        info["threshold"] = threshold  # predict and evaluate decide with it
    if test is not None:
        report = task.report(probs["test"], task.targets(test.labels, classes, "test"), classes, threshold)
        metrics.update({"test_" + k: v for k, v in report.items()})
    if pair is not None:
        metrics["directions"] = _directions(f"{STAGE}/{name}", probs, pair, corpus, held, cfg, classes, scored, device)
    metrics.update({"train_seconds": round(seconds, 1), "n_train": len(train), "n_valid": len(valid),
                    "n_test": len(test) if test is not None else 0,
                    "classes": classes, "phases": phases})
    taken = {"parts": ["train"], "n_train": len(train), "n_valid": len(valid), "n_test": metrics["n_test"]}
    return save_entry(store, STAGE, name, cfg, model=learn.model, vocab=vocab, info=info, metrics=metrics,
                      lineage=lineage(cfg, corpus, taken, parent=parent, precision=precision, learn=learn),
                      curves=learn.curve_recorder.curves(), checkpoint=checkpoint, sp_model=sp_model)


def _directions(ref: str, probs: dict[str, np.ndarray], pair: Entry, corpus: TokenizedCorpus, held: np.ndarray,
                cfg: DictConfig, classes: list[str], scored: dict[str, Docs], device: torch.device) -> dict[str, Any]:
    """This forward classifier (``probs`` of the ``scored`` parts), the backward one (``pair``, loaded from its
    entry and run on the same texts, numericalized with its own vocab) and their averaged-probability ensemble:
    accuracy, error rate, macro-F1 and loss on validation and test, every figure from fp32 class probabilities."""
    other = Classifier.load(pair, device)
    if other.classes != classes:
        raise UsageError(f"{pair.ref} predicts {other.classes}, this run {classes}; a pair needs the same classes.")
    theirs = {"valid": numericalize(corpus, "train", other.vocab).subset(held)}
    if "test" in scored:
        theirs["test"] = scored_test(numericalize(corpus, "test", other.vocab), cfg.data, classes)
    figures: dict[str, Any] = {"members": [ref, pair.ref]}
    for part, docs in scored.items():
        report = ensemble_report({FORWARD: probs[part], BACKWARD: other.predict_docs(theirs[part], cfg.train.eval_bs)},
                                 [classes.index(c) for c in docs.labels], classes)
        for model, values in report.items():
            figures.setdefault(model, {}).update({f"{part}_{k}": v for k, v in values.items()})
    return figures


def _print_directions(figures: dict[str, Any]) -> None:
    """The summary line of a direction=both run: each figure for forward, backward and their ensemble."""
    keys = [k for k in figures[FORWARD] if k.endswith(("_accuracy", "_loss"))]
    print(f"\n== classify direction=both: {' + '.join(figures['members'])}")
    for k in keys:
        print(f"  {k:<15} " + "  ".join(f"{m} {figures[m][k]:.4f}" for m in (FORWARD, BACKWARD, "ensemble")))
