"""Helpers for experiment scripts: run CLI stages, time them, describe the machine, write results."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ulmfit.allocator import preload_env
from ulmfit.checkpoint import checkpoint_dir, latest_checkpoint
from ulmfit.report import hardware
from ulmfit.store import Store

__all__ = ["REPO", "RESULTS", "SHARED_DATA", "append_result", "entry_config", "entry_lineage", "entry_metrics", "entry_parent", "experiment_parser", "has_entry", "hardware", "stamp",
           "ulmfit"]

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"
SHARED_DATA = REPO.parent / "shared" / "data"  # ../shared/data next to the checkout, wherever the script runs from


def ulmfit(*args: str, home: Path, log: Path | None = None) -> float:
    """Run ``python -m ulmfit <args>`` with ULMFIT_HOME=home; return wall seconds; raise on failure.
    A run that was interrupted (its per-epoch checkpoint exists) is continued with ``resume=true``."""
    t0 = time.perf_counter()
    opts = dict(a.split("=", 1) for a in args if "=" in a)
    if latest_checkpoint(checkpoint_dir(home / "store", opts.get("stage", ""), opts.get("run_name", ""))):
        args = (*args, "resume=true")
    cmd = [sys.executable, "-m", "ulmfit", *args]
    print("$", " ".join(cmd), flush=True)
    # The log is written as the stage runs (progress visible with `tail -f`); jemalloc/tcmalloc when installed,
    # because under glibc malloc a long CPU run's memory grows without bound (ulmfit.allocator).
    env = preload_env({**os.environ, "ULMFIT_HOME": str(home), "PYTHONUNBUFFERED": "1"})
    with open(log, "a+") if log else tempfile.TemporaryFile("w+") as fh:
        start = fh.tell()
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            fh.seek(start)
            sys.exit(f"step failed ({proc.returncode}): {' '.join(args)}\n{fh.read()[-3000:]}")
    return time.perf_counter() - t0


def experiment_parser(doc: str, dataset: str, tag: str):
    """The options every pretrain -> fine-tune -> classify script shares."""
    import argparse
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs"), help="ULMFIT_HOME: store + token cache")
    ap.add_argument(f"--{dataset}", default=str(SHARED_DATA / dataset))
    ap.add_argument("--wikitext", default=str(SHARED_DATA / "wikitext-2"))
    ap.add_argument("--pretrain", help="existing pretrain entry name (default: pretrain now)")
    ap.add_argument("--tag", default=tag, help="prefix of the entries this run writes")
    ap.add_argument("--seed", type=int, default=42)
    return ap


def has_entry(home: Path, stage: str, name: str) -> bool:
    """A complete store entry (lineage.json is written last)."""
    return Store(home / "store").has(stage, name)


def entry_metrics(home: Path, stage: str, name: str) -> dict[str, Any]:
    return Store(home / "store").get(stage, name).metrics


def entry_config(home: Path, stage: str, name: str) -> dict[str, Any]:
    """The resolved config a store entry was trained with."""
    from omegaconf import OmegaConf
    return OmegaConf.to_container(Store(home / "store").get(stage, name).config())


def entry_lineage(home: Path, stage: str, name: str) -> dict[str, Any]:
    return Store(home / "store").get(stage, name).lineage


def entry_parent(home: Path, stage: str, name: str) -> str:
    """The name of the entry this one started from (its lineage), or "" for none."""
    return (entry_lineage(home, stage, name).get("parent") or {}).get("name", "")


def stamp() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M")


def append_result(name: str, row: dict[str, Any], title: str, description: str, key: str | None = None) -> str:
    """Add ``row`` to results/<name>.csv and rewrite results/<name>.md as a table of every row so far.

    With ``key``, an earlier row with the same value in that column is replaced (a rerun refreshes its row
    instead of repeating it). A row with new columns widens the table; older rows leave them empty.
    """
    import csv
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.csv"
    rows = []
    if path.exists():
        with open(path) as fh:
            rows = list(csv.DictReader(fh))
    if key is not None:
        rows = [r for r in rows if r.get(key) != str(row[key])]
    rows.append({k: str(v) for k, v in row.items()})
    columns = list(dict.fromkeys(c for r in rows for c in r))
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    md = "\n".join([f"# {title}", "", description, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
                    *["| " + " | ".join(r.get(c, "") for c in columns) + " |" for r in rows]]) + "\n"
    (RESULTS / f"{name}.md").write_text(md)
    return md
