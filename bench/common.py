"""What only the benchmarks need: a measurement in a fresh process that reports JSON, a store entry's record, and
WikiText slices. Nothing here comes from ``experiments/``: running a process is ulmfit's (``ulmfit.processes``), as
are peak RSS, text files and the machine's description (``ulmfit.environment.peak_rss_mb``,
``ulmfit.data.readers.open_text``, ``ulmfit.report.hardware``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ulmfit import SAMPLE_DIR
from ulmfit.processes import ROOT as REPO, run_module

if TYPE_CHECKING:  # the store (torch) is imported only when an entry is read
    from ulmfit.store import Entry

__all__ = ["DEFAULT_DATA", "REPO", "SAMPLE", "emit", "entry", "run_json", "wikitext_slice"]

SAMPLE = SAMPLE_DIR
DEFAULT_DATA = REPO.parent / "shared" / "data"  # ../shared/data next to the checkout, as the experiments read it


def run_json(module: str, *args: str, env: dict[str, str] | None = None, timeout: int = 3600) -> dict[str, Any]:
    """Run ``python -m <module> <args>`` in a fresh process; it prints one JSON object as its last line."""
    return json.loads(run_module(module, *args, env=env, timeout=timeout).strip().splitlines()[-1])


def entry(home: Path, stage: str, name: str) -> "Entry":
    """The store entry ``stage/name`` a child process wrote under ULMFIT_HOME ``home`` (its metrics, lineage)."""
    from ulmfit.store import Store
    return Store(home / "store").get(stage, name)


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
