"""Files on disk: written atomically, checked by sha256. Every module that writes a file or folder another run
reads (store entries, checkpoints, the token cache, portable token files, predictions) writes it through
``atomic_path``, so a crash never leaves half of one where a reader would find it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Literal

TMP_PREFIX = ".tmp-"  # hidden: store listings, checkpoint globs and caches skip names starting with "."
Exists = Literal["replace", "keep", "fail"]


@contextmanager
def atomic_path(path: str | os.PathLike, *, directory: bool = False, exists: Exists = "replace") -> Iterator[Path]:
    """A temporary path beside ``path`` (same folder, so the rename is atomic) to write a file into or, with
    ``directory=True``, a folder (created empty). When the block ends it is renamed onto ``path``; when the block
    raises it is removed and ``path`` is left as it was.

    ``exists``: what happens when ``path`` exists by then: ``replace`` it, ``keep`` it and drop the new copy (a
    concurrent writer of the same content came first), or ``fail`` with FileExistsError.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}"
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        _move_into_place(tmp, path, exists)
    finally:
        _remove(tmp)  # nothing left to remove once it was moved


def _move_into_place(tmp: Path, path: Path, exists: Exists) -> None:
    if not os.path.lexists(path):
        try:
            os.rename(tmp, path)  # a folder onto a non-empty folder that appeared meanwhile raises
            return
        except OSError:
            if not os.path.lexists(path):
                raise
    if exists == "keep":
        return
    if exists == "fail":
        raise FileExistsError(f"{path} exists")
    if not tmp.is_dir():
        os.replace(tmp, path)
        return
    old = path.parent / f"{TMP_PREFIX}{path.name}-old-{secrets.token_hex(4)}"  # a folder cannot replace one
    os.rename(path, old)
    os.rename(tmp, path)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` then rename onto ``path`` (replacing it): a crash never leaves half a file."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path).expanduser()


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
