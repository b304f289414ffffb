"""Learner construction and fitting, shared by the stages: fastai does the loop, we pick the schedule."""

from __future__ import annotations

import logging
import math
import time
from functools import partial
from typing import Any, Callable, Mapping

import numpy as np
import torch
from fastai.callback.core import CancelFitException, Callback
from fastai.callback.tracker import EarlyStoppingCallback, TrackerCallback
from fastai.callback.schedule import Learner  # noqa: F401  (patches fit_one_cycle onto Learner)
from fastai.callback.training import GradientClip
from fastai.learner import AvgSmoothLoss
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import Perplexity, accuracy
from fastai.optimizer import Adam
from fastai.text.learner import LMLearner, TextLearner
from fastai.text.models.awdlstm import awd_lstm_clas_split, awd_lstm_lm_split
from fastai.torch_core import set_seed
from omegaconf import DictConfig, open_dict

from ulmfit import tracking
from ulmfit.checkpoint import (ResumeFit, ResumeState, RunCheckpoint, SaveCheckpoints, load_tracker_weights,
                               restore_rng, restore_training_state)
from ulmfit.curves import CurveRecorder
from ulmfit.distributed import data_parallel, end_data_parallel, is_main_process, unwrap
from ulmfit.errors import UsageError
from ulmfit.losses import BlockwiseCrossEntropyLossFlat
from ulmfit.hardware import resolve_host_sync_every, resolve_lm_loss
from ulmfit.options import AUTO, OPTIMIZERS, SCHEDULES
from ulmfit.precision import apply_precision
from ulmfit.progress import AllocatorAdvice, use_progress
from ulmfit.schedules import SlantedTriangularLR, discriminative_lrs
from ulmfit.tasks import Task

log = logging.getLogger(__name__)


def device_choices(learn) -> dict[str, Any]:
    """What the device-dependent ``auto`` options (``train.host_sync_every``, ``train.lm_loss``) ran as, for
    the entry's lineage."""
    return {k: getattr(learn, k) for k in ("host_sync_every", "lm_loss") if hasattr(learn, k)}


def seed_everything(seed: int) -> None:
    set_seed(seed, reproducible=True)


def optimizer(opt_cfg: Mapping[str, Any]) -> Callable:
    """fastai Adam with the configured betas (``train.optimizer``; the paper's are beta1 0.7, beta2 0.99)."""
    if opt_cfg["name"] not in OPTIMIZERS:
        raise UsageError(f"Unknown optimizer {opt_cfg['name']!r}; use one of {', '.join(OPTIMIZERS)}.")
    return partial(Adam, mom=opt_cfg["beta1"], sqr_mom=opt_cfg["beta2"], eps=opt_cfg["eps"])


def with_tracking(learn: Learner) -> Learner:
    """Add the active experiment tracker's callback (W&B), if any."""
    cb = tracking.current().callback()
    if cb is not None:
        learn.add_cb(cb)
    return learn


def text_learner(learner_cls: type[TextLearner], dls, model: torch.nn.Module, train_cfg: Mapping[str, Any],
                 precision: str, **kwargs: Any) -> TextLearner:
    """What ``lm_learner`` and ``clas_learner`` share: a fastai ``TextLearner`` (or subclass) with the configured
    optimizer, weight decay, AR/TAR and gradient clipping, per-step curves, ``precision`` as ``resolve_hardware``
    resolved it (so ``auto`` is decided once per run), progress lines and the experiment tracker."""
    cbs = [CurveRecorder(), *([GradientClip(train_cfg["clip"])] if train_cfg["clip"] else [])]
    learn = learner_cls(dls, model, opt_func=optimizer(train_cfg["optimizer"]), wd=train_cfg["wd"],
                        alpha=train_cfg["alpha"], beta=train_cfg["beta"], cbs=cbs, **kwargs)
    learn.recorder.smooth_loss = DeviceSmoothLoss()
    learn.host_sync_every = resolve_host_sync_every(train_cfg["host_sync_every"], dls.device)
    return with_tracking(use_progress(apply_precision(learn, precision)))


class DeviceSmoothLoss(AvgSmoothLoss):
    """fastai's smoothed training loss, kept on the loss's device: the stock one copies every step's loss to the
    host, which on a GPU waits for the step's kernels and stops the host from queueing the next step."""

    def accumulate(self, learn) -> None:
        self.count += 1
        loss = learn.loss.detach().float().mean()
        self.val = torch.lerp(loss, self.val.to(loss.device), self.beta)


def lm_learner(dls, model: torch.nn.Module, train_cfg: Mapping[str, Any], precision: str) -> LMLearner:
    """fastai's ``LMLearner`` as ``language_model_learner`` builds it, on a model we built/loaded; the loss is
    fastai's flat cross-entropy, computed block-wise where that is faster (``train.lm_loss``, ``ulmfit.losses``:
    same value, far less memory traffic)."""
    loss = resolve_lm_loss(train_cfg["lm_loss"], dls.device)
    learn = text_learner(LMLearner, dls, model, train_cfg, precision, splitter=awd_lstm_lm_split,
                         loss_func=BlockwiseCrossEntropyLossFlat() if loss == "blockwise" else CrossEntropyLossFlat(),
                         metrics=[accuracy, Perplexity()])
    learn.lm_loss = loss
    return learn


def fit(learn, train_cfg: Mapping[str, Any], epochs: int | None = None, lr: float | None = None,
        cbs: list | None = None, start_epoch: int = 0) -> float:
    """Fit with the configured schedule and discriminative LRs; returns wall seconds.

    ``stlr``: the paper's slanted triangular LRs; ``one_cycle``: fastai's default; ``constant``: flat LR.
    ``start_epoch``: skip that many epochs (fastai's resume mechanism; the schedule continues where it was).
    """
    epochs = train_cfg["epochs"] if epochs is None else epochs
    lr = train_cfg["lr"] if lr is None else lr
    cbs = list(cbs or [])
    schedule = train_cfg["schedule"]
    if schedule not in SCHEDULES:
        raise UsageError(f"train.schedule={schedule!r} is unknown; use one of {', '.join(SCHEDULES)}.")
    if learn.opt is None:
        learn.create_opt()
    lrs = discriminative_lrs(lr, len(learn.opt.param_groups), train_cfg["discr_factor"])
    t0 = time.perf_counter()
    if schedule == "one_cycle":
        learn.fit_one_cycle(epochs, lr_max=lrs, cbs=cbs, start_epoch=start_epoch)
    elif schedule == "stlr":
        stlr_cb = SlantedTriangularLR(train_cfg["stlr"]["cut_frac"], train_cfg["stlr"]["ratio"])
        learn.fit(epochs, lr=lrs, cbs=[stlr_cb, *cbs], start_epoch=start_epoch)
    else:
        learn.fit(epochs, lr=lrs, cbs=cbs, start_epoch=start_epoch)
    return time.perf_counter() - t0


class StopOnNonFinite(Callback):
    """Stop once a training batch's loss is NaN/inf; the last checkpoint (if any) stays in the store for
    ``resume=true``. ``raise_if_diverged`` after the fit turns it into one clear error (raised outside fastai's
    loop, which would prefix the message).

    ``every``: steps between host reads of the check. 1 (CPU) stops before the bad step reaches the weights.
    On a GPU each read waits for the queued kernels, so the flag is kept on the device and read every ``every``
    steps, at the end of each epoch and before any checkpoint is written (``check``): the weights may take a few
    bad steps, but the run stops with an error and no checkpoint or entry holds them."""

    order = 1  # right after fastai's TrainEvalCallback

    def __init__(self, checkpoint: RunCheckpoint | None, phase: int, every: int = 1):
        self.checkpoint, self.phase, self.every, self.diverged = checkpoint, phase, every, None
        self.bad: torch.Tensor | None = None  # any non-finite loss since the last read (on the loss's device)
        self.first_step = 0                   # the first step of that stretch

    def after_loss(self) -> None:
        if not self.training:
            return
        loss = self.learn.loss.detach()
        bad = ~torch.isfinite(loss).all()
        if self.bad is None:
            self.bad, self.first_step = bad, self.iter
        else:
            self.bad |= bad
        if self.every <= 1 or (self.iter + 1) % self.every == 0:
            self.check()

    def after_train(self) -> None:
        self.check()

    def check(self) -> None:
        """Read the flag (one host sync); stop the fit if a loss since the last read was not finite."""
        if self.bad is None:
            return
        bad, self.bad = bool(self.bad), None
        if bad:
            steps = f"step {self.iter}" if self.first_step == self.iter else f"steps {self.first_step}-{self.iter}"
            self.diverged = (float(self.learn.loss.detach().float().mean()), f"phase {self.phase}, epoch "
                             f"{self.epoch}, {steps}")
            raise CancelFitException()

    def raise_if_diverged(self) -> None:
        if self.diverged is None:
            return
        value, where = self.diverged
        kept = self.checkpoint.last if self.checkpoint is not None else None
        fix = "Lower train.lr or set train.clip"
        if kept is not None:
            raise UsageError(f"Training diverged (loss is {value}) at {where}. The last good checkpoint is kept in "
                             f"{kept}. {fix}, and continue from it with resume=true run_name={self.checkpoint.name}.")
        raise UsageError(f"Training diverged (loss is {value}) at {where}, before the first epoch ended; nothing "
                         f"was written. {fix}.")


def monitor_comp(monitor: str) -> Callable:
    """Which way ``monitor`` improves, for fastai's trackers: lower for losses and perplexity (fastai guesses
    from the name, and would take a rising perplexity for a better one), higher for accuracy."""
    return np.less if "loss" in monitor or "error" in monitor or monitor == "perplexity" else np.greater


class ResumableTracker(TrackerCallback):
    """What ``KeepBestEpoch`` and ``StopEarly`` share on top of fastai's ``TrackerCallback``: the way ``monitor``
    improves (``monitor_comp``), the ``skip`` epochs a resumed fit passes over (not compared: their records were
    compared before the interruption) and the best value so far that a checkpoint carries."""

    skip = 0

    def __init__(self, monitor: str, **kwargs: Any):
        super().__init__(monitor=monitor, comp=monitor_comp(monitor), **kwargs)

    def after_epoch(self) -> None:
        if self.epoch < self.skip:
            self.new_best = False
            return
        super().after_epoch()

    def saved_best(self, saved: Mapping[str, Any] | None) -> bool:
        """Does ``saved`` (what ``checkpoint_state`` wrote) hold a best value to continue from? Not from a
        checkpoint written before it was saved, nor when the run resumes with another ``train.monitor``."""
        return bool(saved) and saved.get("best") is not None and saved.get("monitor") == self.monitor

    def best_state(self) -> dict[str, Any]:
        """The JSON-able part of ``checkpoint_state`` both trackers write."""
        return {"monitor": self.monitor, "best": None if self.best is None else float(self.best)}


class KeepBestEpoch(ResumableTracker):
    """fastai's ``SaveModelCallback`` kept in memory and across the phases of a run: after every epoch whose
    ``monitor`` value (``valid_loss`` or a metric) is the best so far, a copy of the weights; ``restore`` loads
    the best at the end. In memory, because an entry is written whole at the end; ``reset_on_fit=False``, because
    each unfreezing phase is its own ``fit`` and the best may be in any of them. A checkpoint carries the best so
    far (``checkpoint_state``, ``best.safetensors``), so a resumed run keeps the epoch an uninterrupted one would."""

    def __init__(self, monitor: str):
        super().__init__(monitor, reset_on_fit=False)
        self.state: dict[str, torch.Tensor] | None = None
        self.where: dict[str, Any] | None = None

    def after_epoch(self) -> None:
        super().after_epoch()
        if self.new_best:
            self.state = {k: v.detach().clone() for k, v in unwrap(self.learn.model).state_dict().items()}
            self.where = {"phase": self.learn.phase[0], "epoch": self.epoch, self.monitor: float(self.best)}

    def checkpoint_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
        """(JSON-able state, the best weights) for ``RunCheckpoint.save``."""
        return {**self.best_state(), "where": self.where}, self.state

    def load_checkpoint_state(self, saved: Mapping[str, Any] | None, weights: dict[str, torch.Tensor] | None) -> None:
        """What ``checkpoint_state`` saved, where it applies (``saved_best``)."""
        if self.saved_best(saved):
            self.best, self.where, self.state = saved["best"], saved["where"], weights

    def restore(self, learn) -> dict[str, Any] | None:
        """Load the best epoch's weights into ``learn``'s model; returns where it was (phase, epoch, value), or
        None if no epoch was seen."""
        if self.state is not None:
            learn.model.load_state_dict(self.state)
            log.info("kept the best epoch by %s: phase %d, epoch %d (%g)", self.monitor, self.where["phase"] + 1,
                     self.where["epoch"] + 1, self.where[self.monitor])
        return self.where


class StopEarly(ResumableTracker, EarlyStoppingCallback):
    """fastai's ``EarlyStoppingCallback`` that a checkpoint carries (best value, epochs without improvement), and
    that does not count the ``skip`` epochs a resumed fit passes over (``ResumableTracker``)."""

    def __init__(self, monitor: str, patience: int, skip: int = 0, saved: Mapping[str, Any] | None = None):
        super().__init__(monitor, patience=patience)
        self.skip, self.saved = skip, saved

    def before_fit(self) -> None:
        super().before_fit()
        if self.saved_best(self.saved):
            self.best, self.wait = self.saved["best"], self.saved["wait"]

    def checkpoint_state(self) -> tuple[dict[str, Any], None]:
        return {**self.best_state(), "wait": self.wait}, None


def check_monitor(train_cfg: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """``train.monitor`` (null: keep the last epoch), checked before any work against the metric names fastai's
    Recorder will have for this stage. ``train.patience`` is checked with every option's type and range, for
    every stage (``ulmfit.schema``)."""
    if train_cfg["monitor"] is not None and train_cfg["monitor"] not in allowed:
        raise UsageError(f"train.monitor={train_cfg['monitor']!r} is not a metric of this stage; use one of "
                         f"{', '.join(allowed)}.")


def epoch_history(learn) -> list[dict[str, float]]:
    """Per-epoch values from fastai's Recorder (train/valid loss and metrics)."""
    names = [n for n in learn.recorder.metric_names if n not in ("epoch", "time")]
    return [{n: float(v) for n, v in zip(names, row) if v is not None} for row in learn.recorder.values]


def lm_eval(learn, dl) -> dict[str, float]:
    """Cross-entropy, accuracy and perplexity of the LM on ``dl`` (hidden state reset first)."""
    loss, acc, _ = learn.validate(dl=dl)
    return {"loss": float(loss), "accuracy": float(acc), "perplexity": float(math.exp(loss))}


def lm_valid(row: Mapping[str, float]) -> dict[str, float]:
    """The LM's validation metrics in one epoch's record, as fastai's Recorder measured them at its end
    (no second validation pass; in data-parallel runs gathered from every process)."""
    return {"loss": row["valid_loss"], "accuracy": row["accuracy"], "perplexity": float(math.exp(row["valid_loss"]))}


def auto_epochs(train_cfg: Mapping[str, Any], n_tokens: int) -> int:
    """``train.epochs=auto`` for a language model: enough passes over ``n_tokens`` to train on
    ``train.auto_tokens`` tokens, at least one and at most ``train.max_epochs``, so a small corpus gets many
    epochs and a large one a single pass (``train.patience`` may stop it earlier; the best epoch is kept)."""
    if train_cfg["epochs"] != AUTO:
        return int(train_cfg["epochs"])
    return max(1, min(int(train_cfg["max_epochs"]), math.ceil(train_cfg["auto_tokens"] / max(1, n_tokens))))


def resolve_auto_epochs(cfg: DictConfig, n_tokens: int) -> int:
    """``auto_epochs`` written into ``cfg.train.epochs`` (a number stays as it is) and returned: the LM stages
    call it once the training tokens are counted, so the fit's plan and the entry's recorded config both hold
    the epochs that ran, not ``auto``."""
    with open_dict(cfg):
        cfg.train.epochs = auto_epochs(cfg.train, n_tokens)
    return cfg.train.epochs


def clas_learner(dls, model: torch.nn.Module, train_cfg: Mapping[str, Any], precision: str,
                 task: Task = Task()) -> TextLearner:
    """fastai's ``TextLearner`` as ``text_classifier_learner`` builds it (AWD-LSTM classifier splitter), with the
    loss and metrics of ``task`` (cross-entropy and accuracy for classification)."""
    return text_learner(TextLearner, dls, model, train_cfg, precision, loss_func=task.loss_func(),
                        splitter=awd_lstm_clas_split, metrics=task.metrics())


def unfreezing_plan(n_groups: int, train_cfg: Mapping[str, Any]) -> list[tuple[int, int]]:
    """(number of trainable top groups, epochs) per phase.

    Gradual unfreezing (§3.3): the head alone for ``phase_epochs``, then one more layer group per phase,
    then every group for ``epochs``. ``unfreeze_phases`` caps the partial phases (3: fastai's IMDB recipe -- head,
    +1 group, +2 groups, then all), saving the costly nearly-all-unfrozen epochs of a deep split.
    Feature extraction: the head alone throughout. Otherwise: all at once.
    """
    if train_cfg["feature_extraction"]:
        return [(1, train_cfg["epochs"])]
    if train_cfg["gradual_unfreezing"]:
        n_partial = train_cfg["unfreeze_phases"] or n_groups - 1
        if n_partial < 1:
            raise UsageError(f"train.unfreeze_phases={n_partial}; use a number of phases >= 1, or null for one per "
                             f"layer group.")
        n_partial = min(n_partial, n_groups - 1)
        return [(k, train_cfg["phase_epochs"]) for k in range(1, n_partial + 1)] + [(n_groups, train_cfg["epochs"])]
    return [(n_groups, train_cfg["epochs"])]


def lm_plan(n_groups: int, train_cfg: Mapping[str, Any]) -> list[tuple[int, int]]:
    """Language models: optionally ``freeze_epochs`` with only the top group (embeddings/decoder), then all."""
    warmup = train_cfg.get("freeze_epochs") or 0  # only lm_finetune's train config has it; pretrain never warms up
    return ([(1, warmup)] if warmup else []) + [(n_groups, train_cfg["epochs"])]


def trainable_groups(learn) -> list[bool]:
    """Per parameter group (lowest first): are all its parameters trained?"""
    return [all(p.requires_grad for p in g) for g in learn.opt.param_lists]


def fit_phases(learn, train_cfg: Mapping[str, Any], plan: Callable[[int, Mapping[str, Any]], list] = unfreezing_plan,
               checkpoint: RunCheckpoint | None = None, resume: ResumeState | None = None,
               extras: dict[str, Any] | None = None, on_phase=None) -> tuple[float, list[dict[str, Any]]]:
    """Run a plan of phases -- ``plan(n_groups, train_cfg)`` gives (trainable top groups, epochs) per phase;
    gradual unfreezing by default --
    with discriminative LRs and the configured schedule in each, the LR times ``phase_lr_mult`` per phase.

    With ``checkpoint`` every finished epoch is saved (with ``extras``, stage values measured before training);
    with ``resume`` the run continues from that checkpoint. Returns wall seconds (including those before the
    interruption) and one record per phase (trainable groups, LR, epochs, per-epoch history).
    ``on_phase(learn, record)`` is called after each phase (tests, loggers).
    ``train.monitor``: the weights of the best epoch by that value are restored at the end (``KeepBestEpoch``;
    where it was: ``learn.kept_epoch``); ``train.patience``: the last phase stops after that many epochs without
    a better value (fastai's ``EarlyStoppingCallback``).
    """
    if learn.opt is None:
        learn.create_opt()
    plan = plan(len(learn.opt.param_groups), train_cfg)
    start_phase, start_epoch = (resume.phase, resume.epoch) if resume else (0, 0)
    if start_phase >= len(plan):
        raise UsageError(f"The checkpoint is at phase {start_phase} but this config has {len(plan)} phase(s); "
                         f"resume with the original train options.")
    phases = list(resume.records) if resume else []
    seconds = resume.seconds if resume else 0.0
    lr_mult = train_cfg.get("phase_lr_mult", 1.0)  # only the classifier's train config has it (LMs: one LR)
    lr = train_cfg["lr"] * lr_mult ** start_phase
    advice = AllocatorAdvice()  # one for all phases: it times the whole run
    keep_best = KeepBestEpoch(train_cfg["monitor"]) if train_cfg.get("monitor") else None
    for i in range(start_phase, len(plan)):
        n_trainable, epochs = plan[i]
        learn.freeze_to(-n_trainable)
        learn.phase = (i, len(plan))  # for progress lines: "phase k/n, epoch i/m"
        if len(plan) > 1:
            log.info("phase %d/%d: top %d of %d layer groups trainable, %d epoch(s), lr %g", i + 1, len(plan),
                     n_trainable, len(learn.opt.param_groups), epochs, lr)
        skip = start_epoch if i == start_phase else 0
        stop = StopOnNonFinite(checkpoint, i, every=getattr(learn, "host_sync_every", 1))
        cbs: list[Callback] = [stop, advice, *([keep_best] if keep_best else [])]
        resumed = resume is not None and i == start_phase
        if keep_best:
            keep_best.skip = skip
            if resumed:
                keep_best.load_checkpoint_state(resume.state.get("trackers", {}).get("KeepBestEpoch"),
                                                load_tracker_weights(resume, "KeepBestEpoch"))
        if keep_best and train_cfg.get("patience") and i == len(plan) - 1:  # early stopping in the last phase only
            cbs.append(StopEarly(train_cfg["monitor"], train_cfg["patience"], skip,
                                 resume.state.get("trackers", {}).get("StopEarly") if resumed else None))
        if resumed:
            restore_training_state(learn, resume)
            restore_rng(learn, resume)  # last: nothing between here and the first batch draws random numbers
            cbs.append(ResumeFit(skip, resume))
        if checkpoint is not None and is_main_process():
            cbs.append(SaveCheckpoints(checkpoint, i, skip, phases, dict(extras or {}), seconds,
                                       every_minutes=train_cfg["checkpoint_minutes"]))
        with data_parallel(learn):  # DDP across `accelerate launch` processes; a no-op in a single process
            seconds += fit(learn, train_cfg, epochs=epochs, lr=lr, cbs=cbs, start_epoch=skip)
        stop.raise_if_diverged()
        record = {"phase": i, "trainable_groups": trainable_groups(learn), "epochs": epochs, "lr": lr,
                  "history": epoch_history(learn)}
        phases.append(record)
        if on_phase is not None:
            on_phase(learn, record)
        lr *= lr_mult
    end_data_parallel()  # rank 0 goes on alone (evaluation, store entry)
    learn.kept_epoch = keep_best.restore(learn) if keep_best else None
    return seconds, phases


def kept_history(phases: list[dict[str, Any]], kept: dict[str, Any] | None) -> dict[str, float]:
    """The per-epoch record (losses, metrics) of the epoch whose weights the run kept: the best one
    (``KeepBestEpoch``), else the last."""
    if kept is not None:
        for record in phases:
            if record["phase"] == kept["phase"] and kept["epoch"] < len(record["history"]):
                return record["history"][kept["epoch"]]
    return phases[-1]["history"][-1]
