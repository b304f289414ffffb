"""Progress a person can read: fastai's progress bars on a terminal; elsewhere (log files, CI, SLURM) a line
every ``interval`` seconds with step/total, tokens/s and the time left, and one line per epoch that names the
unfreezing phase (``phase 2/4, epoch 1/1``)."""

from __future__ import annotations

import logging
import sys
import time

import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.learner import Learner

from ulmfit.allocator import active_allocator, find_replacement

log = logging.getLogger("ulmfit.progress")
INTERVAL = 30.0  # seconds between progress lines without a terminal
SLOWDOWN = 3.0   # a progress interval this many times slower than the fit's best is worth a warning


def where(learn: Learner) -> str:
    """``phase k/n, epoch i/m`` (``epoch i/m`` for a single-phase fit) of the epoch in progress."""
    epoch = f"epoch {learn.epoch + 1}/{learn.n_epoch}"
    k, n = getattr(learn, "phase", (0, 1))
    return f"phase {k + 1}/{n}, {epoch}" if n > 1 else epoch


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressLog(Callback):
    """Log training progress every ``interval`` seconds and each epoch's metrics, for output without a terminal."""

    order = 55  # after the Recorder (50), so the epoch line has its values

    def __init__(self, interval: float = INTERVAL):
        self.interval = interval

    def before_fit(self) -> None:
        self.t0 = self.last = time.perf_counter()
        self.tokens = self.steps = self.tokens_at_last = 0
        self.best_rate, self.warned = 0.0, False

    def after_batch(self) -> None:
        if not self.training:
            return
        self.tokens += self.learn.xb[0].numel()
        self.steps += 1
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        rate = (self.tokens - self.tokens_at_last) / (now - self.last)  # over this interval, not the whole fit
        self.check_rate(rate)
        self.last, self.tokens_at_last = now, self.tokens
        done = self.learn.train_iter - self.epoch * self.n_iter  # batches of this epoch (also after a resume)
        total = self.n_epoch * self.n_iter
        left = (total - self.learn.train_iter) * (now - self.t0) / self.steps
        log.info("%s: step %d/%d, loss %.4f, %.0f tokens/s, training left in this fit ~%s", where(self.learn),
                 done, self.n_iter, float(self.learn.smooth_loss), rate, _clock(left))

    def check_rate(self, rate: float) -> None:
        """Say once per fit when throughput falls to a third of its best: on a CPU that is almost always another
        process competing for the cores, which costs a multi-threaded run far more than its share."""
        self.best_rate = max(self.best_rate, rate)
        if self.warned or self.dls.device.type != "cpu" or rate * SLOWDOWN > self.best_rate:
            return
        self.warned = True
        log.warning("Training slowed from %.0f to %.0f tokens/s. If another process is using the CPU cores, each of "
                    "this run's %d torch threads waits for the others: stop that process, or give each process "
                    "its own cores (taskset, OMP_NUM_THREADS).", self.best_rate, rate, torch.get_num_threads())

    def log_epoch(self, row: list) -> None:
        """fastai's per-epoch row (``Learner.logger``), as one line."""
        names = [n for n in self.learn.recorder.metric_names if n != "epoch"]
        values = "  ".join(f"{n} {v:.4f}" if isinstance(v, float) else f"{n} {v}" for n, v in zip(names, row[1:]))
        log.info("%s: %s", where(self.learn), values)


def use_progress(learn: Learner, interval: float = INTERVAL) -> Learner:
    """Keep fastai's bars on a terminal; otherwise log lines (``ProgressLog``)."""
    if not sys.stdout.isatty():
        learn.remove_cb(ProgressCallback)
        cb = ProgressLog(interval)
        learn.add_cb(cb)
        learn.logger = cb.log_epoch
    return learn


class AllocatorAdvice(Callback):
    """On CPU under glibc malloc, once per process and only once a run has trained for ``after_minutes`` (short
    runs never grow enough to matter), warn how to run with a replacement allocator instead."""

    warned = False  # per process: a pipeline or a sweep in one process warns once

    def __init__(self, after_minutes: float = 10.0):
        self.after = after_minutes * 60

    def before_fit(self) -> None:  # the clock runs from the first fit (phase) on
        self.t0 = getattr(self, "t0", time.perf_counter())
        self.active = not AllocatorAdvice.warned and self.dls.device.type == "cpu" and active_allocator() == "glibc"

    def after_batch(self) -> None:
        if not (self.active and self.training) or time.perf_counter() - self.t0 < self.after:
            return
        AllocatorAdvice.warned, self.active = True, False
        lib = find_replacement()
        how = (f"LD_PRELOAD={lib} python -m ulmfit ..." if lib else
               "install tcmalloc (Debian/Ubuntu: apt-get install libtcmalloc-minimal4) and run with "
               "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python -m ulmfit ...")
        log.warning("Long CPU training under glibc malloc: its arenas fragment, so resident memory grows for as long "
                    "as the run lasts and can exhaust the machine. Next time start it with %s", how)
