"""Which C memory allocator this process runs on, and a replacement for glibc's on long CPU runs.

Under glibc's malloc the resident memory of a CPU training process (AWD-LSTM, with bf16 autocast too) grows for
as long as it trains while the live tensors stay the same, until a long run exhausts the machine's memory.
It is fragmentation, not a leak: glibc raises its mmap
threshold as large blocks are freed, after which the LSTM's many mid-sized activations come from arenas it
cannot hand back (pytorch/pytorch#41486). Preloading jemalloc or tcmalloc keeps the run flat
(``python -m bench.allocator`` measures both). An allocator can only be chosen before the process starts
(``LD_PRELOAD``), so this module finds one, says how to use it, and records which one ran.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from fastai.callback.core import Callback

log = logging.getLogger(__name__)

# Library names first (what LD_PRELOAD needs), in order of preference; searched in the usual library folders.
# tcmalloc first: both grow far less than glibc, and tcmalloc trained fastest of the three in bf16
# (bench/allocator.md; `python -m bench.allocator --allocators glibc,jemalloc,tcmalloc` measures a machine).
REPLACEMENTS = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libjemalloc.so.2", "libjemalloc.so")
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib",
            "/opt/conda/lib")


def active_allocator() -> str:
    """'jemalloc', 'tcmalloc' or 'glibc' (or 'system' off Linux): the malloc this process was started with."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    for name in ("jemalloc", "tcmalloc"):
        if f"lib{name}" in maps:
            return name
    return "glibc"


def find_replacement() -> Path | None:
    """A jemalloc/tcmalloc shared library on this machine, if any (``$ULMFIT_MALLOC`` first, when set)."""
    chosen = os.environ.get("ULMFIT_MALLOC")
    if chosen:
        return Path(chosen) if Path(chosen).is_file() else None
    for name in REPLACEMENTS:
        for d in LIB_DIRS:
            if (Path(d) / name).is_file():
                return Path(d) / name
    return None


def preload_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with a replacement allocator in ``LD_PRELOAD``, for a child process;
    unchanged where none is installed or one is already preloaded."""
    env = dict(os.environ if env is None else env)
    lib = find_replacement()
    if lib is not None and "malloc" not in env.get("LD_PRELOAD", ""):
        env["LD_PRELOAD"] = ":".join(p for p in (str(lib), env.get("LD_PRELOAD", "")) if p)
    return env


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
