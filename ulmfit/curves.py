"""Per-step training curves kept with every entry (``curves.json``), for plots and for comparing runs."""

from __future__ import annotations

from typing import Any

from fastai.callback.core import Callback

MAX_POINTS = 2000  # per curve in curves.json; longer runs are thinned evenly


class CurveRecorder(Callback):
    """Records, across every fit of a learner (the unfreezing phases included): per training step the smoothed
    training loss and each parameter group's LR; per epoch the validation loss; the step each fit started."""

    order = 60  # after fastai's Recorder (50), which updates smooth_loss and the epoch's values

    def __init__(self) -> None:
        self.step, self.data = 0, {"step": [], "train_loss": [], "lrs": [], "valid_step": [], "valid_loss": [],
                                   "phase_start": []}

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
        self.data["train_loss"].append(float(self.learn.recorder.smooth_loss.value))
        self.data["lrs"].append([float(h["lr"]) for h in self.opt.hypers])

    def after_train(self) -> None:
        self.pending = True

    def after_epoch(self) -> None:
        values = self.learn.recorder.values
        if getattr(self, "pending", False) and values and len(values[-1]) > 1 and values[-1][1] is not None:
            self.data["valid_step"].append(self.step)
            self.data["valid_loss"].append(float(values[-1][1]))
        self.pending = False

    def curves(self) -> dict[str, Any]:
        """The recorded curves, per-step series thinned to at most ``MAX_POINTS`` points (last step kept)."""
        n = len(self.data["step"])
        keep = sorted({round(i * (n - 1) / (MAX_POINTS - 1)) for i in range(MAX_POINTS)}) if n > MAX_POINTS else range(n)
        per_step = ("step", "train_loss", "lrs")
        return {k: ([v[i] for i in keep] if k in per_step else list(v)) for k, v in self.data.items()}
