"""The fastai internals that exact resume (ulmfit/checkpoint.py) relies on, pinned on a tiny AWD-LSTM learner.

tests/test_resume.py shows a killed and resumed run ends like an uninterrupted one; this file names the pieces of
fastai that makes that work, so a fastai upgrade that changes one fails here with the piece and the installed
version, not as a subtly different resumed run. pyproject.toml's fastai range is the versions checked here.
"""

from __future__ import annotations

import random
import warnings
from contextlib import contextmanager
from pathlib import Path

import fastai
import pytest
import torch
from fastai.callback.core import Callback, TrainEvalCallback
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.rnn import ModelResetter
from fastai.callback.schedule import ParamScheduler, SchedLin
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Recorder, SkipToEpoch
from fastai.losses import CrossEntropyLossFlat
from fastai.text.learner import LMLearner
from fastai.text.models.awdlstm import awd_lstm_lm_split

from ulmfit.checkpoint import (ResumeFit, ResumeState, SaveCheckpoints, _load_optimizer, _optimizer_state,
                               _recorder_state)
from ulmfit.models import build_language_model, model_info

CHECKED = "2.8.12"  # the fastai version these pins were last checked against (pyproject.toml: fastai>=2.8.12,<2.9)
VOCAB, N_ITER = 30, 4  # 4 training batches per epoch
TINY_MODEL = {"arch": "awd_lstm", "emb_sz": 8, "n_hid": 12, "n_layers": 2, "output_p": 0.1, "hidden_p": 0.1,
              "input_p": 0.1, "embed_p": 0.0, "weight_p": 0.1, "tie_weights": True, "out_bias": True}


@contextmanager
def relied_on(what: str):
    """Fail with the piece of fastai that changed and the installed version, whatever the error."""
    try:
        yield
    except Exception as e:  # AttributeError, a failed assert, a TypeError from a changed signature...
        pytest.fail(f"fastai {fastai.__version__}: {what} is not as ulmfit/checkpoint.py's resume expects "
                    f"({type(e).__name__}: {e}). Resume was checked with fastai {CHECKED}; adapt checkpoint.py "
                    f"(and tests/test_resume.py must pass) before allowing this version in pyproject.toml.",
                    pytrace=False)


def _learner(**kwargs) -> LMLearner:
    torch.manual_seed(0)
    x = torch.randint(0, VOCAB, (8 * N_ITER, 9))
    items = list(zip(x[:, :-1], x[:, 1:]))
    dls = DataLoaders(DataLoader(items, bs=8, shuffle=True, drop_last=True), DataLoader(items[:16], bs=8),
                      device="cpu")
    model = build_language_model(model_info(TINY_MODEL, VOCAB, 1.0))
    learn = LMLearner(dls, model, loss_func=CrossEntropyLossFlat(), splitter=awd_lstm_lm_split, **kwargs)
    learn.logger = lambda row: None
    return learn


class _Spy(Callback):
    """Records what a callback of ResumeFit's order sees, and can set the schedule's position or the hidden state
    where ResumeFit does."""

    order = ResumeFit.order

    def __init__(self, set_pct=None, set_hidden=False):
        self.set_pct, self.set_hidden, self.pcts, self.seen_hidden, self.n_iters = set_pct, set_hidden, [], [], set()

    def before_fit(self):
        encoder = self.model[0]
        encoder.register_forward_pre_hook(lambda m, args: self.seen_hidden.append(m.hidden))

    def before_train(self):
        self.pcts.append(self.learn.pct_train)
        if self.set_pct is not None:
            self.learn.pct_train = self.set_pct

    def before_batch(self):
        if self.training:
            self.n_iters.add(self.learn.n_iter)
        if self.set_hidden and self.training and not hasattr(self, "hidden"):
            encoder = self.model[0]
            self.hidden = [(torch.randn_like(h), torch.randn_like(c)) for h, c in encoder.hidden]
            encoder.bs, encoder.hidden = self.hidden[0][0].shape[1], self.hidden


class _LR(Callback):
    order = ParamScheduler.order + 1

    def before_batch(self):
        if self.training:
            self.learn.lr_seen = getattr(self.learn, "lr_seen", []) + [self.opt.hypers[-1]["lr"]]


def test_callback_order():
    """ResumeFit runs after the Recorder and TrainEvalCallback have reset themselves, before the schedule reads
    pct_train; SaveCheckpoints after the Recorder, the curves and SkipToEpoch."""
    with relied_on("the order of TrainEvalCallback, Recorder, ParamScheduler, SkipToEpoch"):
        assert TrainEvalCallback.order < Recorder.order < ResumeFit.order < ParamScheduler.order
        assert SkipToEpoch.order < SaveCheckpoints.order


def test_recorder_rows_iters_smooth_loss_and_logger():
    learn, rows = _learner(), []
    learn.logger = rows.append
    with learn.no_bar():
        learn.fit(2, 1e-3)
    with relied_on("Recorder.values / Recorder.iters (one row per epoch) and Recorder.smooth_loss.count / .val"):
        rec = learn.recorder
        assert len(rec.values) == 2 and len(rec.iters) == 2 and rec.iters[-1] == 2 * N_ITER
        assert all(isinstance(v, float) for v in rec.values[-1])
        assert rec.smooth_loss.count == 2 * N_ITER and torch.is_tensor(rec.smooth_loss.val)
        state = _recorder_state(learn)
        assert state["values"] == [[float(v) for v in row] for row in rec.values]
    with relied_on("learn.logger (called with each epoch's row)"):
        assert len(rows) == 2 and rows[-1][0] == 1


def test_skipped_epochs_and_the_iteration_counters():
    """fit(start_epoch=k) skips k epochs (SkipToEpoch) but the Recorder still appends an empty row and logs
    each; train_iter / pct_train / epoch / n_iter are the counters the schedule and the checkpoints read."""
    spy, learn, rows = _Spy(), _learner(), []
    learn.logger = rows.append
    with learn.no_bar():
        learn.fit(3, 1e-3, start_epoch=2, cbs=[spy])
    with relied_on("fit(start_epoch=...): empty Recorder rows and logged lines for the skipped epochs"):
        assert [len(v) for v in learn.recorder.values[:2]] == [0, 0] and len(learn.recorder.values[2]) > 0
        assert len(rows) == 3 and len(learn.recorder.iters) == 3
    with relied_on("TrainEvalCallback's train_iter, pct_train (epoch/n_epoch in before_train), epoch; n_iter"):
        assert learn.train_iter == N_ITER and spy.n_iters == {N_ITER} and learn.epoch == 2
        assert spy.pcts == [pytest.approx(2 / 3)]
        assert learn.pct_train == pytest.approx(2 / 3 + 1 / 3)


def test_pct_train_set_in_before_train_is_what_the_schedule_reads():
    learn = _learner()
    with learn.no_bar():
        learn.fit(1, cbs=[_Spy(set_pct=0.25), ParamScheduler({"lr": SchedLin(0.0, 1.0)}), _LR()])
    with relied_on("ParamScheduler reading learn.pct_train in before_batch"):
        assert learn.lr_seen[0] == pytest.approx(0.25)
        assert learn.lr_seen[1] == pytest.approx(0.25 + 1 / N_ITER)


def test_encoder_hidden_set_before_a_batch_is_the_one_it_runs_from():
    spy, learn = _Spy(set_hidden=True), _learner()
    with relied_on("the AWD-LSTM encoder's hidden (n_layers (h, c) pairs) and bs"):
        encoder = learn.model[0]
        encoder.reset()
        assert len(encoder.hidden) == TINY_MODEL["n_layers"] and encoder.bs == 1
        assert all(h.shape == c.shape and h.shape[:2] == (1, 1) for h, c in encoder.hidden)
    with learn.no_bar():
        learn.fit(1, 1e-3, cbs=[spy])
    with relied_on("ModelResetter resetting only before train/validate: a hidden state set in before_batch "
                   "is used by that batch's forward"):
        assert not hasattr(ModelResetter, "before_batch")
        assert spy.seen_hidden[0] is spy.hidden


def test_optimizer_state_round_trip():
    learn = _learner()
    with learn.no_bar():
        learn.fit(1, 1e-3)
    with relied_on("Optimizer.state_dict() / load_state_dict() ({'state', 'hypers'}) and all_params()"):
        tensors, plain = _optimizer_state(learn.opt)
        assert tensors and set(learn.opt.state_dict()) == {"state", "hypers"}
        fresh = _learner()
        fresh.create_opt()
        _load_optimizer(fresh.opt, tensors, plain)
        assert _optimizer_state(fresh.opt)[1] == plain
        assert all(torch.equal(tensors[k], v) for k, v in _optimizer_state(fresh.opt)[0].items())


def test_dataloader_rng_decides_the_shuffle():
    dl = _learner().dls.train
    with relied_on("DataLoader.rng (a random.Random that the shuffle draws from)"):
        assert isinstance(dl.rng, random.Random)
        state = dl.rng.getstate()
        first = [b[0].clone() for b in dl]
        dl.rng.setstate(state)
        assert all(torch.equal(a, b[0]) for a, b in zip(first, dl))


def test_resume_fit_puts_the_recorder_back():
    """ResumeFit itself on fastai's fit loop: the saved rows return, the skipped epochs add none, the trained
    one is logged, and the step counter continues."""
    learn = _learner()
    with learn.no_bar():
        learn.fit(2, 1e-3)
    saved = _recorder_state(learn)
    rs = ResumeState(Path("unused"), 0, 2, [], {}, 0.0, {"recorder": saved})
    learn, rows = _learner(), []
    learn.logger = rows.append
    with learn.no_bar():
        learn.fit(3, 1e-3, start_epoch=2, cbs=[ResumeFit(2, rs)])
    with relied_on("the Recorder and logger as ResumeFit restores them"):
        assert learn.recorder.values[:2] == saved["values"] and len(learn.recorder.values) == 3
        assert learn.recorder.iters[:2] == saved["iters"] and len(rows) == 1
        assert learn.train_iter == 3 * N_ITER


def test_mixed_precision_scaler_is_reached_through_the_callback():
    """checkpoint.py reads and restores the fp16 GradScaler as ``learn.mixed_precision.scaler``."""
    learn = _learner(cbs=[MixedPrecision()])
    with warnings.catch_warnings(), relied_on("MixedPrecision setting learn.scaler in before_fit"):
        warnings.simplefilter("ignore")  # no CUDA here: the scaler is created disabled
        learn.mixed_precision.before_fit()
        assert learn.mixed_precision.scaler is learn.scaler
        assert isinstance(learn.scaler.state_dict(), dict)
        learn.mixed_precision.after_fit()
