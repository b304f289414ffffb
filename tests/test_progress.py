"""Progress without a terminal: a line per interval with step/total, tokens/s and time left, the phase and epoch
named, and one warning when throughput collapses (another process on the cores)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import torch

from ulmfit import progress


def _fit(monkeypatch, seconds_per_batch: list[float], phase=(1, 4)) -> None:
    """Drive a ProgressLog through one epoch of len(seconds_per_batch) batches of 64 x 70 tokens."""
    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    learn = SimpleNamespace(training=True, xb=(torch.zeros(64, 70),), train_iter=0, epoch=0, n_epoch=1,
                            n_iter=len(seconds_per_batch), smooth_loss=torch.tensor(4.5), phase=phase,
                            dls=SimpleNamespace(device=torch.device("cpu")))
    cb = progress.ProgressLog(interval=30)
    cb.learn = learn
    cb.before_fit()
    for dt in seconds_per_batch:
        clock[0] += dt
        learn.train_iter += 1
        cb.after_batch()


def test_progress_lines_name_phase_step_speed_and_time_left(monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="ulmfit.progress"):
        _fit(monkeypatch, [1.0] * 100)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # every 30 s of a 100 s epoch
    assert lines[0] == "phase 2/4, epoch 1/1: step 30/100, loss 4.5000, 4480 tokens/s, training left in this fit ~1:10"
    assert all(r.levelno == logging.INFO for r in caplog.records)


def test_a_collapse_in_throughput_is_said_once(monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="ulmfit.progress"):
        _fit(monkeypatch, [1.0] * 60 + [15.0] * 12, phase=(0, 1))  # another process takes the cores
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "slowed from 4480 to" in warnings[0] and "torch threads" in warnings[0]
    assert caplog.records[0].getMessage().startswith("epoch 1/1: step 30/72")  # one phase: no phase label
