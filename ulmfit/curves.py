"""Per-step training curves kept with every entry (``curves.json``), for plots and for comparing runs."""

from __future__ import annotations

from typing import Any

import torch
from fastai.callback.core import Callback

MAX_POINTS = 2000  # per curve in curves.json; longer runs are thinned evenly


class CurveRecorder(Callback):
    """Records, across every fit of a learner (the unfreezing phases included): per training step the smoothed
    training loss and each parameter group's LR; per epoch the validation loss; the step each fit started."""

    order = 60  # after fastai's Recorder (50), which updates smooth_loss and the epoch's values

    def __init__(self) -> None:
        self.step, self.data = 0, {"step": [], "train_loss": [], "lrs": [], "valid_step": [], "valid_loss": [],
                                   "phase_start": []}
        self.losses: list[torch.Tensor] = []  # this epoch's smoothed losses, not yet read

    # before_train/after_train run only inside a fit; validate() and get_preds() also send before_fit/after_epoch.
    def before_train(self) -> None:
        if self.epoch == 0 and self.train_iter == 0:  # not when a fit resumes within its first epoch
            self.data["phase_start"].append(self.step)
        self.pending = False

    def after_batch(self) -> None:
        if not self.training:
            return
        self.step += 1
        self.data["step"].append(self.step)
        # kept as a tensor (on the GPU, reading it would wait for the step) and read once per epoch
        self.losses.append(self.learn.recorder.smooth_loss.value.detach())
        self.data["lrs"].append([float(h["lr"]) for h in self.opt.hypers])

    def after_train(self) -> None:
        self.pending = True
        self.read_losses()

    def read_losses(self) -> None:
        """Move the losses recorded since the last read to ``data`` (one host read for all of them)."""
        if self.losses:
            self.data["train_loss"] += torch.stack(self.losses).float().cpu().tolist()
            self.losses = []

    def after_epoch(self) -> None:
        values = self.learn.recorder.values
        if getattr(self, "pending", False) and values and len(values[-1]) > 1 and values[-1][1] is not None:
            self.data["valid_step"].append(self.step)
            self.data["valid_loss"].append(float(values[-1][1]))
        self.pending = False

    def curves(self) -> dict[str, Any]:
        """The recorded curves, per-step series thinned to at most ``MAX_POINTS`` points (last step kept)."""
        self.read_losses()  # a fit cancelled mid-epoch (divergence) has not read them
        n = len(self.data["step"])
        keep = sorted({round(i * (n - 1) / (MAX_POINTS - 1)) for i in range(MAX_POINTS)}) if n > MAX_POINTS else range(n)
        per_step = ("step", "train_loss", "lrs")
        return {k: ([v[i] for i in keep] if k in per_step else list(v)) for k, v in self.data.items()}
