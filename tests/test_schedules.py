"""The paper's schedules: STLR (eq. 3) and discriminative LRs, checked as fastai applies them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.optimizer import SGD
from torch.utils.data import TensorDataset

from ulmfit.schedules import SlantedTriangularLR, discriminative_lrs, stlr


def paper_stlr(t: int, T: int, lr_max: float, cut_frac: float = 0.1, ratio: float = 32) -> float:
    """Eq. 3 written out independently of ulmfit.schedules."""
    cut = math.floor(T * cut_frac)
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return lr_max * (1 + p * (ratio - 1)) / ratio


CUT_FRAC, RATIO = 0.1, 32  # the paper's values (conf/train/pretrain.yaml: train.stlr)


def ours(t: int, total: int, lr: float) -> float:
    """ulmfit.schedules.stlr with the paper's cut_frac and ratio."""
    return stlr(t, total, lr, CUT_FRAC, RATIO)


@pytest.mark.parametrize("total", [101, 1001, 41])  # T * cut_frac is an integer: the paper's formula exactly
def test_stlr_matches_the_paper(total):
    lr, T = 0.01, total - 1
    cut = math.floor(T * 0.1)
    assert ours(0, total, lr) == pytest.approx(lr / 32)    # first step: lr / ratio
    assert ours(cut, total, lr) == pytest.approx(lr)      # peak at the cut
    assert ours(T, total, lr) == pytest.approx(lr / 32)    # last step: back to lr / ratio
    for t in range(total):
        assert ours(t, total, lr) == pytest.approx(paper_stlr(t, T, lr))


@pytest.mark.parametrize("total", [37, 1000, 3])
def test_stlr_ends_at_lr_over_ratio_for_any_length(total):
    lr, T = 0.01, total - 1
    cut = max(math.floor(T * 0.1), 1)
    assert ours(0, total, lr) == pytest.approx(lr / 32)
    assert ours(T, total, lr) == pytest.approx(lr / 32)
    values = [float(ours(t, total, lr)) for t in range(total)]
    assert min(values) >= lr / 32 - 1e-15 and np.argmax(values) == cut and np.all(np.diff(values[:cut + 1]) > 0) and np.all(np.diff(values[cut:]) <= 0)


def test_discriminative_lrs_divide_by_2_6_per_group():
    lrs = discriminative_lrs(4e-3, 5, 2.6)
    assert lrs[-1] == 4e-3
    for k in range(5):
        assert lrs[-1 - k] == pytest.approx(4e-3 / 2.6 ** k, rel=1e-12)


def _toy_learner(n_groups: int = 3) -> Learner:
    x = torch.randn(64, 4)
    ds = TensorDataset(x, x.sum(1, keepdim=True))
    dls = DataLoaders.from_dsets(ds, ds, bs=8, device="cpu")  # 8 steps per epoch
    model = torch.nn.Sequential(*[torch.nn.Linear(4 if i == 0 else 4, 4 if i < n_groups - 1 else 1)
                                  for i in range(n_groups)])
    return Learner(dls, model, loss_func=torch.nn.MSELoss(), opt_func=SGD,
                   splitter=lambda m: [list(layer.parameters()) for layer in m])


def test_stlr_callback_drives_every_group_with_its_own_peak():
    learn = _toy_learner(3)
    seen = []
    learn.fit(2, lr=discriminative_lrs(0.01, 3, 2.6), cbs=[SlantedTriangularLR(0.1, 32)])
    # the recorder keeps the LR of every step for the last group; check all groups via a replay
    lrs_top = np.array(learn.recorder.hps["lr"])
    total = 2 * len(learn.dls.train)
    expected = [float(ours(t, total, 0.01)) for t in range(total)]
    np.testing.assert_allclose(lrs_top, expected, rtol=1e-9)
    for g, peak in zip(learn.opt.hypers, discriminative_lrs(0.01, 3, 2.6)):
        seen.append(g["lr"] / peak)  # after the fit every group sits at the same point of its own schedule
    assert np.allclose(seen, seen[0])
