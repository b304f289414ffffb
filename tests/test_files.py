"""ulmfit.files: the one atomic-write helper (files and folders) and the sha256 of a file."""

from __future__ import annotations

import hashlib

import pytest

from ulmfit.files import atomic_path, sha256_file, write_atomic


def test_a_file_replaces_the_old_one_only_when_complete(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    assert write_atomic(path, lambda tmp: tmp.write_text("one")) == path
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert path.read_text() == "one" and [p.name for p in path.parent.iterdir()] == ["out.txt"]
    write_atomic(path, lambda tmp: tmp.write_text("two"))
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["out.txt"]


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    path = tmp_path / "entry"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path, directory=True) as tmp:
            assert tmp.is_dir() and tmp.parent == tmp_path and tmp.name.startswith(".")
            (tmp / "a").write_text("a")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with atomic_path(path, directory=True) as tmp:
        (tmp / "a").write_text("a")
    assert [p.name for p in path.iterdir()] == ["a"]


@pytest.mark.parametrize("exists, kept", [("replace", "new"), ("keep", "old")])
def test_an_existing_folder_is_replaced_or_kept(tmp_path, exists, kept):
    path = tmp_path / "cache"
    path.mkdir()
    (path / "f").write_text("old")
    with atomic_path(path, directory=True, exists=exists) as tmp:
        (tmp / "f").write_text("new")
    assert (path / "f").read_text() == kept and [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_an_existing_folder_can_be_refused(tmp_path):
    (tmp_path / "entry").mkdir()
    with pytest.raises(FileExistsError):
        with atomic_path(tmp_path / "entry", directory=True, exists="fail") as tmp:
            (tmp / "f").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["entry"] and not any((tmp_path / "entry").iterdir())


def test_sha256_file(tmp_path):
    data = bytes(range(256)) * 5000  # more than one read chunk
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
