"""``python -m <module>`` in a fresh process, ``python -m ulmfit`` above all: what the experiment scripts
(``experiments/``) and the benchmarks (``bench/``) run their measurements and recipes with, each its own process
so that memory and timings are the run's alone.

The ulmfit modules that pull in torch/fastai are imported where they are used, so that a parent process that only
starts children stays light.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ulmfit import PACKAGE_DIR

ROOT = PACKAGE_DIR.parent  # the children run from here: in a checkout its root, so experiments.X and bench.X import


def run_module(module: str, *args: str, env: dict[str, str] | None = None, log: Path | None = None,
               timeout: float | None = None) -> str:
    """Run ``python -m <module> <args>`` from ``ROOT`` in a fresh process, with ``env`` added to this
    process's environment, and return its stdout. With ``log``, stdout and stderr are appended to that file as
    they come (``tail -f`` shows progress) and nothing is returned. A failure exits with the output's tail."""
    cmd = [sys.executable, "-m", module, *args]
    print("$", " ".join(cmd), flush=True)
    full_env = {**os.environ, **(env or {})}
    if log is None:
        proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return proc.stdout
    with open(log, "a+") as fh:
        start = fh.tell()
        proc = subprocess.run(cmd, cwd=ROOT, env=full_env, stdout=fh, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            fh.seek(start)
            sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{fh.read()[-3000:]}")
    return ""


def run_ulmfit(*args: str, home: Path, log: Path | None = None, allocator: bool = True,
               env: dict[str, str] | None = None) -> float:
    """Run ``python -m ulmfit <args>`` with ULMFIT_HOME=home and ``env`` added to this process's environment
    (e.g. ``ulmfit.emulation.AVX2_ENV``); return its wall seconds; exit on failure.

    ``allocator``: preload jemalloc/tcmalloc where installed, because under glibc malloc a long CPU run's memory
    grows without bound (``ulmfit.allocator``); the benchmarks pass False to measure the process as it comes.
    Steps that write store entries go through ``ulmfit.recipes.run_steps``, which continues interrupted ones."""
    env = {**(env or {}), "ULMFIT_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    if allocator:
        from ulmfit.allocator import preload_env
        env = preload_env({**os.environ, **env})
    t0 = time.perf_counter()
    if log is None:  # keep the output out of the console, and show its tail on failure
        with tempfile.TemporaryDirectory() as tmp:
            run_module("ulmfit", *args, env=env, log=Path(tmp) / "ulmfit.log")
    else:
        run_module("ulmfit", *args, env=env, log=log)
    return time.perf_counter() - t0
