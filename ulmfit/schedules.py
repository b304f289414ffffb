"""Learning-rate schedules of the paper, as fastai callbacks.

- Discriminative fine-tuning (§3.2): layer group ``l-1`` gets the LR of group ``l`` divided by ``factor``.
- Slanted triangular LRs (§3.2, eq. 3): a short linear rise over ``cut_frac`` of the steps, then a long
  linear decay, from ``lr/ratio`` to ``lr`` and back, applied to every parameter group with its own peak.
"""

from __future__ import annotations

import math

import numpy as np
from fastai.callback.schedule import ParamScheduler


def discriminative_lrs(lr: float, n_groups: int, factor: float) -> np.ndarray:
    """Per-group LRs, lowest group first: ``[lr/factor^(n-1), ..., lr/factor, lr]`` (``train.discr_factor``)."""
    return lr / factor ** np.arange(n_groups - 1, -1, -1, dtype=np.float64)


def stlr(t: int, total: int, lr_max: np.ndarray | float, cut_frac: float, ratio: float) -> np.ndarray:
    """The paper's eq. 3 at step ``t`` of ``total`` (t = 0 .. total-1).

    cut = floor(T * cut_frac); p = t/cut before the cut, else 1 - (t-cut)/(cut*(1/cut_frac - 1));
    lr_t = lr_max * (1 + p*(ratio-1)) / ratio, with T = total-1 (the last step index): the first step is
    lr_max/ratio, step ``cut`` is lr_max and the last step lr_max/ratio again. When T*cut_frac is not an
    integer the paper's decay length cut*(1/cut_frac - 1) differs from T - cut (and would take the LR
    below lr_max/ratio, even negative, at the end); we decay over T - cut, which equals it otherwise.
    """
    T = max(total - 1, 1)
    cut = min(max(math.floor(T * cut_frac), 1), T)
    p = t / cut if t < cut else 1 - (t - cut) / max(T - cut, 1)
    p = min(max(p, 0.0), 1.0)
    return np.asarray(lr_max) * (1 + p * (ratio - 1)) / ratio


class SlantedTriangularLR(ParamScheduler):
    """STLR as a fastai ``ParamScheduler``: every group follows eq. 3 with its own peak LR.

    Peaks are the optimizer's per-group LRs when the fit starts (as ``fit_one_cycle`` reads them), so
    ``learn.fit(n, lr=discriminative_lrs(...), cbs=SlantedTriangularLR(cut_frac, ratio))`` gives discriminative STLR.
    ``cut_frac`` and ``ratio`` come from ``train.stlr``.
    """

    def __init__(self, cut_frac: float, ratio: float):
        self.cut_frac, self.ratio = cut_frac, ratio
        super().__init__({"lr": None})

    def before_fit(self) -> None:
        super().before_fit()
        self.lr_max = np.array([h["lr"] for h in self.opt.hypers])
        self.total = self.n_epoch * len(self.dls.train)  # n_iter is only set once the epoch starts

    def before_batch(self) -> None:
        self.opt.set_hyper("lr", stlr(self.train_iter, self.total, self.lr_max, self.cut_frac, self.ratio))
