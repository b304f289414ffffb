"""``python -m ulmfit.store``: list a store's entries, compare them (``--compare``), verify them (``--verify``).

Its own module, above both the store and ``ulmfit.compare`` (which reads entries), so nothing in the store
imports what is built on it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ulmfit.errors import UsageError
from ulmfit.store import Store


def main(argv: list[str] | None = None) -> int:
    """`python -m ulmfit.store [--root DIR] [STAGE]`: list entries with their key metrics;
    `--compare STAGE [--sort METRIC]`: what differs between them (a sweep's overrides) and their metrics;
    `--verify [STAGE]`: check every file of every entry against the sizes and sha256 recorded when it was written
    (exit code 2 when one differs)."""
    ap = argparse.ArgumentParser(prog="python -m ulmfit.store", description=main.__doc__)
    ap.add_argument("stage", nargs="?", help="only this stage")
    default = os.environ.get("ULMFIT_STORE") or str(Path(os.environ.get("ULMFIT_HOME", ".")) / "store")
    ap.add_argument("--root", default=default, help=f"the store directory (default: {default}, as paths.store)")
    ap.add_argument("--compare", metavar="STAGE", help="a table of the STAGE entries: differing options, metrics")
    ap.add_argument("--sort", metavar="COLUMN", help="with --compare: best first by this metric or option")
    ap.add_argument("--match", metavar="TEXT", help="with --compare: only entries whose name contains TEXT")
    ap.add_argument("--verify", action="store_true", help="check every entry's files against its manifest")
    args = ap.parse_args(argv)
    store = Store(args.root)
    try:
        if args.verify:
            return verify(store, args.stage)
        if args.compare:
            return compare_entries(store, args.compare, args.sort, args.match)
        list_entries(store, args.stage)
        return 0
    except UsageError as e:  # e.g. a damaged entry met while listing: one line, as `python -m ulmfit` says it
        print(f"ulmfit.store: error: {e}", file=sys.stderr)
        return e.exit_code


def list_entries(store: Store, stage: str | None) -> None:
    for e in store.entries(stage):
        lin = e.lineage
        parent = lin.get("parent")
        m = {k: v for k, v in e.metrics.items() if isinstance(v, (int, float))}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in list(m.items())[:4])
        print(f"{e.ref:45s} {lin['created'][:19]}  parent={parent['stage'] + '/' + parent['name'] if parent else '-'}  {shown}")


def compare_entries(store: Store, stage: str, sort: str | None, match: str | None) -> int:
    from ulmfit.compare import compare  # pandas and fastai: only this command needs them
    entries = [e for e in store.entries(stage) if not match or match in e.name]
    if not entries:
        print(f"No {stage} entries{' matching ' + match if match else ''} in {store.root}.", file=sys.stderr)
        return 2
    try:
        table = compare(entries, sort)
    except KeyError:
        print(f"--sort {sort}: not a column; choose one of {', '.join(compare(entries).columns)}.", file=sys.stderr)
        return 2
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    return 0


def verify(store: Store, stage: str | None) -> int:
    """One line per damaged file and per entry that recorded no checksums; a summary; 2 when a file is damaged."""
    results = [(e, problems) for e, problems in store.verify() if stage in (None, e.stage)]
    damaged = unverified = 0
    for entry, problems in results:
        where = f"{entry.ref}{' (shipped)' if entry.shipped else ''}"
        if problems is None:
            unverified += 1
            print(f"UNVERIFIED {where}: no manifest.json (written before entries recorded checksums)")
        for filename, problem in problems or []:
            print(f"DAMAGED    {where}: {filename} {problem} ({entry.path / filename})")
        damaged += bool(problems)
    fix = " Delete a damaged entry and re-run its stage to recreate it (a shipped one: reinstall the package)."
    print(f"{len(results)} entries in {store.root}: {len(results) - damaged - unverified} as written, "
          f"{damaged} damaged, {unverified} unverified.{fix if damaged else ''}")
    return 2 if damaged else 0
