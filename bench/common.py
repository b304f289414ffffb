"""What only the benchmarks need: a measurement in a fresh process that reports JSON, and WikiText slices.
Running a process and the repository paths are the experiments' (``experiments.common``); peak RSS, text files and
the machine's description are ulmfit's (``ulmfit.environment.peak_rss_mb``, ``ulmfit.data.readers.open_text``,
``ulmfit.report.hardware``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.common import REPO, SHARED_DATA, run_module
from ulmfit import SAMPLE_DIR

__all__ = ["DEFAULT_DATA", "REPO", "SAMPLE", "emit", "run_json", "wikitext_slice"]

SAMPLE = SAMPLE_DIR
DEFAULT_DATA = SHARED_DATA


def run_json(module: str, *args: str, env: dict[str, str] | None = None, timeout: int = 3600) -> dict[str, Any]:
    """Run ``python -m <module> <args>`` in a fresh process; it prints one JSON object as its last line."""
    return json.loads(run_module(module, *args, env=env, timeout=timeout).strip().splitlines()[-1])


def emit(result: dict[str, Any]) -> None:
    """The last stdout line of a benchmark child process: its result as JSON."""
    print(json.dumps(result), flush=True)


def wikitext_slice(src: Path, dst: Path, lines: dict[str, int]) -> Path:
    """Write the first ``lines[split]`` lines of each WikiText split of ``src`` as a WikiText folder ``dst``."""
    from ulmfit.data.readers import find_file, open_text
    dst.mkdir(parents=True, exist_ok=True)
    for split, n in lines.items():
        with open_text(find_file(src, f"wiki.{split}.tokens")) as fh:
            (dst / f"wiki.{split}.tokens").write_text("".join(line for _, line in zip(range(n), fh)), encoding="utf-8")
    return dst
