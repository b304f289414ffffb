"""Shared helpers for the benchmarks: subprocess runs (each figure in a fresh process), peak RSS, data slices."""

from __future__ import annotations

import json
import lzma
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "ulmfit" / "sample_data"
DEFAULT_DATA = REPO.parent / "shared" / "data"


def run_json(module: str, *args: str, env: dict[str, str] | None = None, timeout: int = 3600) -> dict[str, Any]:
    """Run ``python -m <module> <args>`` in a fresh process; it prints one JSON object as its last line."""
    cmd = [sys.executable, "-m", module, *args]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        sys.exit(f"benchmark step failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ulmfit_cli(*args: str, home: Path) -> float:
    """Run ``python -m ulmfit <args>`` with ``ULMFIT_HOME=home``; wall seconds."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "ulmfit", *args]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "ULMFIT_HOME": str(home)}, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"ulmfit failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-4000:]}")
    return time.perf_counter() - t0


def emit(result: dict[str, Any]) -> None:
    """The last stdout line of a benchmark child process: its result as JSON."""
    print(json.dumps(result), flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_text(path: Path):
    return lzma.open(path, "rt", encoding="utf-8") if path.suffix == ".xz" else open(path, encoding="utf-8")


def wikitext_slice(src: Path, dst: Path, lines: dict[str, int]) -> Path:
    """Write the first ``lines[split]`` lines of each WikiText split of ``src`` as a WikiText folder ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for split, n in lines.items():
        path = next(p for p in (src / f"wiki.{split}.tokens", src / f"wiki.{split}.tokens.xz") if p.exists())
        with open_text(path) as fh:
            (dst / f"wiki.{split}.tokens").write_text("".join(line for _, line in zip(range(n), fh)), encoding="utf-8")
    return dst
