"""The device-dependent choices of the training path, exercised on CPU (the CUDA side of each is checked by
``tests/gpu_checks.py`` on a GPU): how ``auto`` resolves per device, the divergence check read every N steps,
the smoothed loss and curves kept on the device, and the CPU side of the batch copies."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.learner import AvgSmoothLoss, Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import SGD
from omegaconf import OmegaConf

from tests.conftest import TINY, run_cli
from ulmfit.config import compose
from ulmfit.curves import CurveRecorder
from ulmfit.data.loaders import to_device_async
from ulmfit.errors import UsageError
from ulmfit.losses import BlockwiseCrossEntropyLossFlat
from ulmfit.schema import validate
from ulmfit.hardware import resolve_host_sync_every, resolve_lm_loss
from ulmfit.training import DeviceSmoothLoss, StopOnNonFinite

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
REPO = Path(__file__).resolve().parents[1]


def test_auto_resolves_per_device():
    assert resolve_host_sync_every("auto", CPU) == 1
    assert resolve_host_sync_every("auto", CUDA) > 1
    assert resolve_host_sync_every(7, CUDA) == resolve_host_sync_every(7, CPU) == 7
    assert resolve_lm_loss("auto", CPU) == "blockwise" and resolve_lm_loss("auto", CUDA) == "fastai"
    assert resolve_lm_loss("blockwise", CUDA) == "blockwise"


@pytest.mark.parametrize("key,value", [("train.host_sync_every", 0), ("train.host_sync_every", "often"),
                                       ("train.lm_loss", "fused")])
def test_bad_device_options_are_refused(key, value):
    cfg = compose("stage=pretrain")
    OmegaConf.update(cfg, key, value)
    with pytest.raises(UsageError, match=key.replace(".", r"\.")):
        validate(cfg)


class _NanAt:
    """A loss that is NaN at the given training steps (and MSE otherwise)."""

    def __init__(self, steps: set[int]):
        self.steps, self.calls = steps, 0

    def __call__(self, pred, y):
        loss = torch.nn.functional.mse_loss(pred, y)
        self.calls += 1
        return loss * float("nan") if self.calls - 1 in self.steps else loss


def _learner(loss_func) -> Learner:
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    ds = list(zip(x, x.sum(1, keepdim=True)))
    dls = DataLoaders.from_dsets(ds, ds[:8], bs=4, shuffle=False, device=CPU)  # 16 training steps
    return Learner(dls, torch.nn.Linear(3, 1), loss_func=loss_func, opt_func=SGD, lr=0.01)


@pytest.mark.parametrize("every,stopped_after,where", [(1, 4, "step 4"), (3, 5, "steps 3-5")])
def test_divergence_is_read_every_n_steps(every, stopped_after, where):
    """every=1 stops at the bad step, before its update; every=3 reads the flag at steps 2, 5, ...: the stretch
    that holds the bad step is named, and the fit stops there, before that read's own update."""
    learn = _learner(_NanAt({4}))
    stop = StopOnNonFinite(None, 0, every=every)
    learn.fit(1, cbs=[stop])
    assert learn.train_iter == stopped_after
    assert stop.diverged is not None and stop.diverged[1].endswith(where)
    with pytest.raises(UsageError, match="diverged"):
        stop.raise_if_diverged()


def test_a_late_read_still_catches_the_last_steps_of_an_epoch():
    """A bad step after the last periodic read is caught at the end of the epoch."""
    learn = _learner(_NanAt({14}))
    stop = StopOnNonFinite(None, 0, every=100)
    learn.fit(1, cbs=[stop])
    assert stop.diverged is not None and stop.diverged[1].endswith("steps 0-15")


def test_device_smooth_loss_equals_fastais():
    class L:  # what accumulate reads
        loss = None
    ours, stock = DeviceSmoothLoss(), AvgSmoothLoss()
    for v in (3.0, 2.5, 2.7, 1.9):
        L.loss = torch.tensor(v)
        ours.accumulate(L)
        stock.accumulate(L)
        assert float(ours.value) == float(stock.value)


def test_curves_read_the_device_losses_once_per_epoch():
    learn = _learner(torch.nn.functional.mse_loss)
    learn.recorder.smooth_loss = DeviceSmoothLoss()
    rec = CurveRecorder()
    learn.fit(2, cbs=[rec])
    curves = rec.curves()
    assert len(curves["train_loss"]) == len(curves["step"]) == 32 and not rec.losses
    assert curves["train_loss"][-1] == pytest.approx(float(learn.recorder.losses[-1]))
    assert all(isinstance(v, float) and math.isfinite(v) for v in curves["train_loss"])


def test_both_lm_losses_agree():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 70, 500, requires_grad=True), torch.randint(0, 500, (2, 70))
    a = BlockwiseCrossEntropyLossFlat()(logits, target)
    ga, = torch.autograd.grad(a, logits)
    b = CrossEntropyLossFlat()(logits, target)
    gb, = torch.autograd.grad(b, logits)
    assert float(a) == pytest.approx(float(b), rel=1e-6) and torch.allclose(ga, gb, atol=1e-7)


def test_cpu_batches_are_not_copied():
    t = torch.arange(6).view(2, 3)
    assert to_device_async(t, CPU) is t and to_device_async(t, None) is t


def test_the_entry_records_what_auto_ran_as(mini_wikitext, tmp_path):
    """A tiny pretrain with the fastai loss chosen explicitly and checks read every 5 steps: it trains, and its
    lineage says what ran (``auto`` on CPU would be blockwise and 1)."""
    out = run_cli("stage=pretrain", "data=wikitext2", f"data.root={mini_wikitext}", *TINY, "train.lm_loss=fastai",
                  "train.host_sync_every=5", "run_name=p", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lineage = json.loads((tmp_path / "store" / "pretrain" / "p" / "lineage.json").read_text())
    assert lineage["lm_loss"] == "fastai" and lineage["host_sync_every"] == 5
    curves = json.loads((tmp_path / "store" / "pretrain" / "p" / "curves.json").read_text())
    assert curves["train_loss"] and all(math.isfinite(v) for v in curves["train_loss"])


def test_the_gpu_checks_refuse_to_run_without_a_gpu():
    """tests/gpu_checks.py (run on a GPU machine) imports here and says clearly that it needs a GPU."""
    proc = subprocess.run([sys.executable, "-m", "tests.gpu_checks"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
