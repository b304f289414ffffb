"""Stage 3: the target-task classifier (ULMFiT §3.3).

load parent encoder (``lm_finetune``, or ``pretrain`` to skip fine-tuning, or none) -> labelled texts with the
parent's vocab -> concat-pooling head -> gradual unfreezing with discriminative LRs and STLR in each phase ->
test accuracy, error, per-class metrics, confusion matrix -> store entry ``classify/<run>``.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from ulmfit.data import build_vocab, labelled_classes, load_corpus, numericalize, scored_test, split_of
from ulmfit.data.loaders import clas_dataloaders
from ulmfit.errors import UsageError
from ulmfit.distributed import is_main_process
from ulmfit.evaluation import classification_metrics, predict_probs
from ulmfit.models import build_classifier, classifier_info, model_info
from ulmfit.hardware import resolve_hardware
from ulmfit.options import AUTO, CLAS_MONITORS, CLASSIFY_PARENT_STAGES
from ulmfit.stages.common import data_identity, find_parent, lineage, open_run, save_entry, subword_model
from ulmfit.store import Entry
from ulmfit.precision import scoring_in_fp32
from ulmfit.training import check_monitor, clas_learner, fit_phases, kept_history, seed_everything
from ulmfit.weights import check_direction, load_encoder

log = logging.getLogger(__name__)
STAGE = "classify"
PARENT_STAGES = CLASSIFY_PARENT_STAGES


def run(cfg: DictConfig) -> Entry:
    if cfg.stage.parent_stage not in PARENT_STAGES:
        raise UsageError(f"stage.parent_stage={cfg.stage.parent_stage!r}; use one of {', '.join(PARENT_STAGES)}.")
    if cfg.train.epochs == AUTO:
        raise UsageError("train.epochs=auto sizes language-model training; give the classifier a number of epochs "
                         "(e.g. train.epochs=4; train.patience stops it earlier).")
    check_monitor(cfg.train, CLAS_MONITORS)
    store, name, checkpoint, resume = open_run(cfg, STAGE)
    data = data_identity(cfg.data, cfg.tokenizer)
    # a fine-tuned LM must have been fine-tuned on this corpus; any general-domain (pretrain) LM fits
    fits = data if cfg.stage.parent_stage == "lm_finetune" else None
    parent = None if cfg.stage.parent_stage == "none" else find_parent(store, cfg.stage.parent_stage, cfg.stage.parent,
                                                                        fits)
    if parent is not None:
        check_direction(parent, cfg.backwards)
    sp_model = subword_model(cfg, parent, ["train"])  # the parent's, or (no parent) trained on the texts
    seed_everything(cfg.seed)
    device, precision = resolve_hardware(cfg.train)

    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache, sp_model)
    classes = labelled_classes(corpus)
    vocab = parent.vocab if parent else build_vocab(corpus, ["train"], cfg.data.max_vocab, cfg.data.min_freq)
    docs = numericalize(corpus, "train", vocab)
    keep, held = split_of(corpus, cfg.data, cfg.data_seed)
    train, valid = docs.subset(keep), docs.subset(held)
    dls = clas_dataloaders(train, valid, classes, vocab, cfg.train.bs, cfg.train.bptt, device, cfg.backwards,
                           eval_bs=cfg.train.eval_bs)

    encoder_info = parent.model_info if parent else model_info(cfg.model, len(vocab), 1.0, cfg.backwards)
    info = classifier_info(encoder_info, cfg.model.head, classes, cfg.train.drop_mult, cfg.train.bptt)
    model = build_classifier(info)
    if parent is not None:
        load_encoder(parent, model)
    log.info("classify: parent %s, %d train / %d valid docs, %d classes", parent.ref if parent else "none",
             len(train), len(valid), len(classes))

    learn = clas_learner(dls, model, cfg.train, precision)
    seconds, phases = fit_phases(learn, cfg.train, checkpoint=checkpoint, resume=resume)
    if not is_main_process():  # data-parallel run: rank 0 evaluates and writes the entry
        return None

    kept = kept_history(phases, learn.kept_epoch)  # the best epoch's weights are the ones scored and saved
    metrics = {"valid_accuracy": float(kept.get("accuracy", float("nan"))), "valid_loss": float(kept["valid_loss"]),
               "kept_epoch": learn.kept_epoch}
    if "test" in corpus.parts:
        test = scored_test(numericalize(corpus, "test", vocab), cfg.data, classes)
        with scoring_in_fp32(learn):
            probs = predict_probs(learn, test, cfg.train.eval_bs, cfg.train.bptt, cfg.backwards)
        report = classification_metrics(probs, [classes.index(c) for c in test.labels], classes)
        metrics.update({"test_" + k: v for k, v in report.items()})
    metrics.update({"train_seconds": round(seconds, 1), "n_train": len(train), "n_valid": len(valid),
                    "n_test": len(test) if "test" in corpus.parts else 0,
                    "classes": classes, "phases": phases})
    taken = {"parts": ["train"], "n_train": len(train), "n_valid": len(valid), "n_test": metrics["n_test"]}
    return save_entry(store, STAGE, name, cfg, model=learn.model, vocab=vocab, info=info, metrics=metrics,
                      lineage=lineage(cfg, corpus, taken, parent=parent, precision=precision, learn=learn),
                      curves=learn.curve_recorder.curves(), checkpoint=checkpoint, sp_model=sp_model)
