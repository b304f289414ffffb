"""Experiment tracking: Weights & Biases, offline unless configured online, never blocking a run.

fastai 2.8.12's ``WandbCallback`` crashes in ``before_fit`` (fastai issue #4173), so ``WandbMetrics`` is
a small callback of our own: per-step train loss and the LR of every parameter group, per-epoch
validation metrics. The resolved Hydra config goes to ``wandb.config`` and the final metrics to the run
summary. If W&B cannot start (not installed, no network in online mode, bad key) a warning is logged and
training goes on: every run's metrics are in its store entry regardless.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from fastai.callback.core import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
_active: "Tracker | None" = None


class Tracker:
    """No-op tracker (``logger=none``); the W&B one overrides what it records."""

    def callback(self) -> Callback | None:
        return None

    def log_summary(self, metrics: Mapping[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbMetrics(Callback):
    """Per-step loss and per-group LRs, per-epoch recorder values, to a wandb run."""

    order = 60  # after the Recorder has its values

    def __init__(self, wandb_run, log_every: int = 10):
        # not `self.run`: fastai's Callback uses that name for its own on/off flag
        self.wandb_run, self.log_every, self.step = wandb_run, log_every, 0

    def after_batch(self) -> None:
        if not self.training:
            return
        self.step += 1
        if self.step % self.log_every == 0:
            row = {"train/loss": float(self.smooth_loss), "epoch": self.epoch + self.iter / self.n_iter}
            row.update({f"lr/group{i}": h["lr"] for i, h in enumerate(self.opt.hypers)})
            self.wandb_run.log(row, step=self.step)

    def after_epoch(self) -> None:
        names = [n for n in self.recorder.metric_names[1:-1]]
        values = self.recorder.log[1:-1]
        self.wandb_run.log({f"epoch/{n}": float(v) for n, v in zip(names, values) if v is not None}, step=self.step)


class WandbTracker(Tracker):
    """A W&B run started when training starts (the first learner asks for its callback), so a run that fails
    on its inputs before that leaves no W&B directory behind."""

    def __init__(self, cfg: DictConfig):
        self.cfg, self.run, self._cb, self._failed = cfg, None, None, False

    def _started(self):
        if self.run is None and not self._failed:
            self.run = _start_wandb(self.cfg)
            self._failed = self.run is None
        return self.run

    def callback(self) -> Callback | None:
        if self._cb is None and self._started() is not None:  # one per run: steps count across fits and phases
            self._cb = WandbMetrics(self.run, self.cfg.logger.log_every)
        return self._cb

    def log_summary(self, metrics: Mapping[str, Any]) -> None:
        if self._started() is not None:
            self.run.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def _start_wandb(cfg: DictConfig):
    """A wandb run for this stage, or None (with a warning) when W&B cannot start."""
    lc = cfg.logger
    mode = os.environ.get("WANDB_MODE") or lc.mode  # the environment wins, as wandb users expect
    try:
        import wandb
        run = wandb.init(project=lc.project, entity=lc.entity, group=lc.group, mode=mode,
                         name=f"{cfg.stage.name}/{cfg.run_name or 'unnamed'}", job_type=cfg.stage.name,
                         config=OmegaConf.to_container(cfg, resolve=True), dir=str(cfg.paths.logs),
                         settings=wandb.Settings(init_timeout=lc.init_timeout, silent=True))
    except Exception as e:  # never let tracking stop training: network, auth, disk, import problems
        log.warning("W&B could not start (%s: %s); training continues and metrics are kept in the store.",
                    type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
        return None
    run_dir = Path(run.dir).parent  # run.dir is its files/ folder; `wandb sync` takes the run's folder
    if mode == "offline":
        log.info("W&B offline run %s in %s; upload it later with: wandb sync %s", run.name, run_dir, run_dir)
    else:
        log.info("W&B run %s (%s mode) in %s", run.name, mode, run_dir)
    return run


@contextmanager
def tracking(cfg: DictConfig) -> Iterator[Tracker]:
    """The tracker for one stage run; ``current()`` returns it to the learner builders and the store."""
    global _active
    name = cfg.get("logger", {}).get("name", "none")
    if name not in ("none", "wandb"):
        from ulmfit.errors import UsageError
        raise UsageError(f"logger={name!r} is unknown; use logger=wandb or logger=none.")
    from ulmfit.distributed import is_main_process
    _active = WandbTracker(cfg) if name == "wandb" and is_main_process() else Tracker()  # one W&B run per job
    try:
        yield _active
    finally:
        try:
            _active.finish()
        except Exception as e:
            log.warning("W&B finish failed (%s); the store entry is complete.", e)
        _active = None


def current() -> Tracker:
    return _active or Tracker()
