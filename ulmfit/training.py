"""Learner construction and fitting, shared by the stages: fastai does the loop, we pick the schedule."""

from __future__ import annotations

import logging
import math
import sys
import time
from functools import partial
from typing import Any, Mapping

import numpy as np
import torch
from fastai.callback.schedule import Learner  # noqa: F401  (patches fit_one_cycle onto Learner)
from fastai.callback.progress import ProgressCallback
from fastai.callback.training import GradientClip
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import Perplexity, accuracy
from fastai.optimizer import Adam
from fastai.text.learner import LMLearner, TextLearner
from fastai.text.models.awdlstm import awd_lstm_clas_split, awd_lstm_lm_split
from fastai.torch_core import set_seed

from ulmfit import tracking
from ulmfit.curves import CurveRecorder
from ulmfit.errors import UsageError
from ulmfit.losses import BlockwiseCrossEntropyLossFlat
from ulmfit.precision import apply_precision
from ulmfit.schedules import SlantedTriangularLR, discriminative_lrs

log = logging.getLogger(__name__)
SCHEDULES = ("stlr", "one_cycle", "constant")


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"train.device={name} but no CUDA GPU is visible; use train.device=cpu or auto.")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    set_seed(seed, reproducible=True)


def optimizer(opt_cfg: Mapping[str, Any]):
    """fastai Adam with the paper's betas by default (beta1 0.7, beta2 0.99)."""
    if opt_cfg.get("name", "adam") != "adam":
        raise UsageError(f"Unknown optimizer {opt_cfg.get('name')!r}; only 'adam' is supported.")
    return partial(Adam, mom=opt_cfg.get("beta1", 0.7), sqr_mom=opt_cfg.get("beta2", 0.99),
                   eps=opt_cfg.get("eps", 1e-5))


def with_tracking(learn: Learner) -> Learner:
    """Add the active experiment tracker's callback (W&B), if any."""
    cb = tracking.current().callback()
    if cb is not None:
        learn.add_cb(cb)
    return learn


def plain_progress(learn: Learner) -> Learner:
    """Outside a terminal (logs, CI, sweeps) drop fastai's redrawing progress bars; log one line per epoch."""
    if not sys.stdout.isatty():
        learn.remove_cb(ProgressCallback)

        def _log(values: list) -> None:
            pairs = zip(learn.recorder.metric_names, values)
            log.info("  ".join(f"{n} {v:.4f}" if isinstance(v, float) else f"{n} {v}" for n, v in pairs))
        learn.logger = _log
    return learn


def lm_learner(dls, model: torch.nn.Module, train_cfg: Mapping[str, Any]) -> LMLearner:
    """fastai's ``LMLearner`` as ``language_model_learner`` builds it, on a model we built/loaded; the loss is
    fastai's flat cross-entropy computed block-wise (``ulmfit.losses``: same value, far less memory traffic)."""
    cbs = [CurveRecorder(), *([GradientClip(train_cfg["clip"])] if train_cfg.get("clip") else [])]
    learn = LMLearner(dls, model, loss_func=BlockwiseCrossEntropyLossFlat(), splitter=awd_lstm_lm_split,
                      opt_func=optimizer(train_cfg["optimizer"]), metrics=[accuracy, Perplexity()],
                      wd=train_cfg.get("wd", 0.01), alpha=train_cfg.get("alpha", 2.0),
                      beta=train_cfg.get("beta", 1.0), cbs=cbs)
    return with_tracking(plain_progress(apply_precision(learn, train_cfg.get("precision", "fp32"))))


def fit(learn, train_cfg: Mapping[str, Any], epochs: int | None = None, lr: float | None = None) -> float:
    """Fit with the configured schedule and discriminative LRs; returns wall seconds.

    ``stlr``: the paper's slanted triangular LRs; ``one_cycle``: fastai's default; ``constant``: flat LR.
    """
    epochs = train_cfg["epochs"] if epochs is None else epochs
    lr = train_cfg["lr"] if lr is None else lr
    schedule = train_cfg.get("schedule", "stlr")
    if schedule not in SCHEDULES:
        raise UsageError(f"train.schedule={schedule!r} is unknown; use one of {', '.join(SCHEDULES)}.")
    if learn.opt is None:
        learn.create_opt()
    lrs = discriminative_lrs(lr, len(learn.opt.param_groups), train_cfg.get("discr_factor", 2.6))
    t0 = time.perf_counter()
    if schedule == "one_cycle":
        learn.fit_one_cycle(epochs, lr_max=lrs)
    elif schedule == "stlr":
        stlr_cfg = train_cfg.get("stlr", {})
        learn.fit(epochs, lr=lrs, cbs=SlantedTriangularLR(stlr_cfg.get("cut_frac", 0.1), stlr_cfg.get("ratio", 32)))
    else:
        learn.fit(epochs, lr=lrs)
    return time.perf_counter() - t0


def epoch_history(learn) -> list[dict[str, float]]:
    """Per-epoch values from fastai's Recorder (train/valid loss and metrics)."""
    names = [n for n in learn.recorder.metric_names if n not in ("epoch", "time")]
    return [{n: float(v) for n, v in zip(names, row) if v is not None} for row in learn.recorder.values]


def lm_eval(learn, dl) -> dict[str, float]:
    """Cross-entropy, accuracy and perplexity of the LM on ``dl`` (hidden state reset first)."""
    loss, acc, _ = learn.validate(dl=dl)
    return {"loss": float(loss), "accuracy": float(acc), "perplexity": float(math.exp(loss))}


def last_valid(history: list[dict[str, float]]) -> dict[str, float]:
    """The LM's validation metrics after the last epoch, as fastai's Recorder measured them at its end
    (no second validation pass)."""
    last = history[-1]
    return {"loss": last["valid_loss"], "accuracy": last["accuracy"], "perplexity": float(math.exp(last["valid_loss"]))}


def check_finite(history: list[dict[str, float]]) -> None:
    if history and not np.isfinite(history[-1].get("train_loss", 0.0)):
        raise UsageError("Training diverged (loss is NaN/inf). Lower train.lr or enable train.clip.")


def clas_learner(dls, model: torch.nn.Module, train_cfg: Mapping[str, Any]) -> TextLearner:
    """fastai's ``TextLearner`` as ``text_classifier_learner`` builds it (AWD-LSTM classifier splitter)."""
    cbs = [CurveRecorder(), *([GradientClip(train_cfg["clip"])] if train_cfg.get("clip") else [])]
    learn = TextLearner(dls, model, loss_func=CrossEntropyLossFlat(), splitter=awd_lstm_clas_split,
                        opt_func=optimizer(train_cfg["optimizer"]), metrics=[accuracy],
                        wd=train_cfg.get("wd", 0.01), alpha=train_cfg.get("alpha", 2.0),
                        beta=train_cfg.get("beta", 1.0), cbs=cbs)
    return with_tracking(plain_progress(apply_precision(learn, train_cfg.get("precision", "fp32"))))


def unfreezing_plan(n_groups: int, train_cfg: Mapping[str, Any]) -> list[tuple[int, int]]:
    """(number of trainable top groups, epochs) per phase.

    Gradual unfreezing (§3.3): the head alone for ``phase_epochs``, then one more layer group per phase,
    then every group for ``epochs``. Feature extraction: the head alone throughout. Otherwise: all at once.
    """
    if train_cfg.get("feature_extraction", False):
        return [(1, train_cfg["epochs"])]
    if train_cfg.get("gradual_unfreezing", True):
        return [(k, train_cfg.get("phase_epochs", 1)) for k in range(1, n_groups)] + [(n_groups, train_cfg["epochs"])]
    return [(n_groups, train_cfg["epochs"])]


def trainable_groups(learn) -> list[bool]:
    """Per parameter group (lowest first): are all its parameters trained?"""
    return [all(p.requires_grad for p in g) for g in learn.opt.param_lists]


def fit_gradual(learn, train_cfg: Mapping[str, Any], on_phase=None) -> tuple[float, list[dict[str, Any]]]:
    """Run the unfreezing plan with discriminative LRs and the configured schedule in each phase.

    Returns wall seconds and one record per phase (trainable groups, LR, epochs, per-epoch history).
    ``on_phase(learn, record)`` is called after each phase (tests, loggers).
    """
    if learn.opt is None:
        learn.create_opt()
    n_groups = len(learn.opt.param_groups)
    lr, seconds, phases = train_cfg["lr"], 0.0, []
    for i, (n_trainable, epochs) in enumerate(unfreezing_plan(n_groups, train_cfg)):
        learn.freeze_to(-n_trainable)
        seconds += fit(learn, train_cfg, epochs=epochs, lr=lr)
        record = {"phase": i, "trainable_groups": trainable_groups(learn), "epochs": epochs, "lr": lr,
                  "history": epoch_history(learn)}
        phases.append(record)
        check_finite(record["history"])
        if on_phase is not None:
            on_phase(learn, record)
        lr *= train_cfg.get("phase_lr_mult", 1.0)
    return seconds, phases
