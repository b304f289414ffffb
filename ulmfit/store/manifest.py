"""Checksums of an entry's files: ``manifest.json`` records the size and sha256 of every file of an entry when it
is written (``write_manifest``, last); reading a file compares it with them (``file_problem``).

    {"algorithm": "sha256", "files": {"model.safetensors": {"bytes": 22212048, "sha256": "e3f1..."}, ...}}

``sha256sum`` computes the same digests, so the record can also be checked without ulmfit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ulmfit.files import sha256_file

MANIFEST = "manifest.json"
Record = Mapping[str, Mapping[str, Any]]  # file name -> {"bytes": int, "sha256": str}


def entry_files(folder: Path) -> list[str]:
    """The files an entry consists of (relative paths), without its manifest and hidden files."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))


def write_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Record the size and sha256 of every file in ``folder`` in its ``manifest.json``; returns the record."""
    files = {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
             for name in entry_files(folder)}
    (folder / MANIFEST).write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=2) + "\n",
                                   encoding="utf-8")
    return files


def read_manifest(folder: Path) -> dict[str, dict[str, Any]] | None:
    """The record of ``folder``'s files, or None when it has no manifest (written before entries recorded one).
    Raises ValueError when the manifest is not a readable record."""
    try:
        text = (folder / MANIFEST).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as e:
        raise ValueError(str(e)) from None
    files = json.loads(text).get("files")  # JSONDecodeError is a ValueError
    if not isinstance(files, dict) or not all(isinstance(v, dict) and {"bytes", "sha256"} <= set(v)
                                              for v in files.values()):
        raise ValueError("no 'files' record of bytes and sha256")
    return files


def file_problem(folder: Path, name: str, recorded: Mapping[str, Any] | None) -> str | None:
    """What differs between file ``name`` of ``folder`` and its ``recorded`` size and sha256 (None: the file
    is not in the record), as the rest of a sentence; None when nothing does."""
    path = folder / name
    if recorded is None:
        return "is not in its manifest.json (it was added after the entry was written)" if path.is_file() else None
    if not path.is_file():
        return "is missing"
    size, expected = path.stat().st_size, int(recorded["bytes"])
    if size != expected:
        return f"is {'truncated' if size < expected else 'longer than written'} ({size:,} bytes, {expected:,} written)"
    if sha256_file(path) != recorded["sha256"]:
        return "does not match the sha256 recorded when the entry was written (its bytes changed since)"
    return None


def folder_problems(folder: Path, record: Record, complete: bool = True) -> list[tuple[str, str]]:
    """Every (file, problem) of ``folder`` against ``record``; with ``complete`` also files the record lacks."""
    names = sorted(set(record) | (set(entry_files(folder)) if complete else set()))
    return [(name, problem) for name in names if (problem := file_problem(folder, name, record.get(name)))]
