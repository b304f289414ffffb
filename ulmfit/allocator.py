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
import sys
from pathlib import Path


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


REEXEC_MARK = "ULMFIT_ALLOCATOR_CHOSEN"  # set in the re-executed process, so it never re-executes again


def reexec_with_replacement(argv: list[str], env: dict[str, str] | None = None) -> tuple[list[str], dict] | None:
    """The command and environment to restart ``python -m ulmfit <argv>`` under tcmalloc/jemalloc, or None to go
    on as is: where no replacement is installed, one is already preloaded, this is not Linux, the process was
    restarted already, or ``ULMFIT_MALLOC=system`` asks for the C library's malloc. Training steps run
    faster under tcmalloc than under glibc malloc (bench/allocator.md), and memory stays flat."""
    env = dict(os.environ if env is None else env)
    if not sys.platform.startswith("linux") or env.get(REEXEC_MARK) or env.get("ULMFIT_MALLOC") == "system":
        return None
    if "malloc" in env.get("LD_PRELOAD", "") or find_replacement() is None:
        return None
    return [sys.executable, "-m", "ulmfit", *argv], {**preload_env(env), REEXEC_MARK: "1"}
