"""The checkpoint store: the contract between stages.

One entry per run at ``<root>/<stage>/<run-name>/``::

    model.safetensors   weights (safetensors: loading never unpickles)
    vocab.json          the token list, index = id
    model.json          what to rebuild: architecture, its config, vocab size, direction
    spm.model           the SentencePiece model its texts were cut with (data.tokenizer=sentencepiece only)
    config.yaml         the fully resolved Hydra config of the run
    metrics.json        final (and per-epoch) metrics
    lineage.json        parent entry, data fingerprint, versions, git commit; its presence marks a complete entry
    manifest.json       size and sha256 of each file above, written last (``ulmfit.store.manifest``)

Entries are written into a hidden temporary directory and renamed into place only when complete, so a
crash never leaves an entry that a later stage would load. Reading a file of an entry checks it against the
manifest first: a changed, truncated or missing file stops the run with one line naming the entry and the file.
Entries written before manifests load unchecked (with a warning when their weights are loaded).

A store also shows the LMs shipped inside the package (``ulmfit.SHIPPED_DIR``, or the folder given as
``Store(root, shipped=...)``) as read-only ``pretrain`` entries. ``python -m ulmfit.store`` lists entries,
compares them and verifies a whole store (``ulmfit/store/cli.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_model

import ulmfit
from ulmfit.environment import environment_info
from ulmfit.errors import UsageError
from ulmfit.files import atomic_path
from ulmfit.store.manifest import MANIFEST, Record, file_problem, folder_problems, read_manifest, write_manifest

log = logging.getLogger(__name__)
WEIGHTS = "model.safetensors"
LINEAGE = "lineage.json"  # its presence marks a complete entry
SHIPPED_STAGE = "pretrain"  # the stage the package's shipped LMs appear under
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=,+-]*$")
_warned_unverified: set[Path] = set()


def as_fp32(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp16 weights (a shipped entry's) back to the fp32 every model trains in."""
    return {k: v.float() if v.dtype == torch.float16 else v for k, v in tensors.items()}


def new_run_name() -> str:
    """A sortable, collision-safe default name (sweep jobs may start within the same second)."""
    return f"{dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Entry:
    """A complete store entry (read-only view)."""

    stage: str
    name: str
    path: Path
    shipped: bool = field(default=False, compare=False)  # inside the package: reinstalled, not re-run

    @property
    def ref(self) -> str:
        return f"{self.stage}/{self.name}"

    # ---- integrity -----------------------------------------------------------------------------
    def record(self) -> tuple[Record | None, bool]:
        """(size and sha256 of the files as written, whether that covers every file). From ``manifest.json``;
        an entry written before manifests has none, except a shipped LM's weights (its lineage's checksum)."""
        try:
            files = read_manifest(self.path)
        except ValueError as e:
            raise UsageError(self._damaged(MANIFEST, f"is unreadable ({str(e)[:80]})")) from None
        if files is not None:
            return files, True
        try:
            shipped = json.loads((self.path / LINEAGE).read_text(encoding="utf-8")).get("shipped") or {}
        except (OSError, ValueError):
            shipped = {}
        if shipped.get("weights_sha256") and shipped.get("weights_bytes"):
            return {WEIGHTS: {"bytes": shipped["weights_bytes"], "sha256": shipped["weights_sha256"]}}, False
        return None, False

    def verify(self, filename: str) -> None:
        """Stop (UsageError, one line naming the entry and the file) when ``filename`` is not as written."""
        record, complete = self.record()
        if record is None or (filename not in record and not complete):
            if filename.endswith(".safetensors") and self.path not in _warned_unverified:
                _warned_unverified.add(self.path)
                log.warning("%s has no %s (written before entries recorded checksums): its weights are loaded "
                            "unverified.", self.ref, MANIFEST)
            return
        problem = file_problem(self.path, filename, record.get(filename))
        if problem:
            raise UsageError(self._damaged(filename, problem))

    def check(self) -> None:
        """``verify`` every file the entry records at once (the first damaged one stops, with the same line), so a
        run can refuse a damaged entry before any work rather than when it loads the file."""
        for filename, problem in self.problems() or []:
            raise UsageError(self._damaged(filename, problem))

    def problems(self) -> list[tuple[str, str]] | None:
        """Every (file, what is wrong with it): [] when all files are as written, None when none was recorded."""
        record, complete = self.record()
        return None if record is None else folder_problems(self.path, record, complete)

    def _damaged(self, filename: str, problem: str) -> str:
        fix = (f"Reinstall the ulmfit package to restore it ({self.path})." if self.shipped else
               f"Delete {self.path} and re-run stage={self.stage} run_name={self.name} to recreate it.")
        return f"Store entry {self.ref} is damaged: {filename} {problem}. {fix}"

    # ---- reading -------------------------------------------------------------------------------
    def read_json(self, filename: str) -> Any:
        self.verify(filename)
        try:
            return json.loads((self.path / filename).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"Store entry {self.ref} has no {filename}; it was written by an incompatible "
                             f"version or edited by hand. Re-run its stage to recreate it.") from None
        except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8 text at all
            raise UsageError(f"{self.path / filename} is corrupted ({str(e)[:120]}). Re-run stage "
                             f"'{self.stage}' to recreate the entry.") from None

    @property
    def lineage(self) -> dict[str, Any]:
        return self.read_json(LINEAGE)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.read_json("metrics.json")

    @property
    def model_info(self) -> dict[str, Any]:
        return self.read_json("model.json")

    @property
    def vocab(self) -> list[str]:
        vocab = self.read_json("vocab.json")
        expected = self.model_info.get("vocab_size") if (self.path / "model.json").is_file() else None
        if not isinstance(vocab, list) or (expected is not None and len(vocab) != expected):
            size = len(vocab) if isinstance(vocab, list) else type(vocab).__name__
            raise UsageError(f"{self.ref}: vocab.json has {size} tokens but its model has {expected} (model.json); "
                             f"the entry was edited or mixed from two runs. Re-run stage '{self.stage}' to recreate it.")
        return vocab

    @property
    def created(self) -> str:
        return self.lineage["created"]

    def config(self) -> DictConfig:
        self.verify("config.yaml")
        return OmegaConf.load(self.path / "config.yaml")

    def state_dict(self, filename: str = WEIGHTS) -> dict[str, torch.Tensor]:
        """Raw tensors (tied/shared tensors appear once, under one of their names)."""
        self.verify(filename)
        try:
            return as_fp32(load_file(self.path / filename))  # a shipped entry stores fp16
        except Exception as e:  # safetensors raises several types for truncated/corrupt files
            raise UsageError(f"Cannot read weights {self.path / filename}: {e}. The file is truncated or "
                             f"corrupted; re-run stage '{self.stage}' to recreate it.") from None

    def load_weights(self, model: torch.nn.Module, filename: str = WEIGHTS, strict: bool = True) -> None:
        """Load weights into ``model`` (handles the tied embedding/decoder weights)."""
        self.verify(filename)
        path = self.path / filename
        try:
            with safe_open(path, "pt"):  # reads and validates the header only
                pass
        except Exception as e:  # safetensors raises several types for truncated/corrupt files
            raise UsageError(f"Cannot read weights {path}: {e}. The file is truncated or corrupted; re-run "
                             f"stage '{self.stage}' to recreate the entry.") from None
        try:
            missing, unexpected = load_model(model, path, strict=False)
        except RuntimeError as e:
            detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e)[:200])
            raise UsageError(f"Weights in {self.ref} do not match the model built from its model.json "
                             f"({detail}); the entry's model.json/vocab.json disagree with its weights. "
                             f"Re-run stage '{self.stage}' to recreate it.") from None
        if strict and (missing or unexpected):
            raise UsageError(f"Weights in {self.ref} do not match the model (missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}): the model config differs from the one "
                             f"the entry was trained with.")


class EntryWriter:
    """Writes the files of one entry into its temporary directory (``Store.create`` records them in the entry's
    manifest when the entry is complete)."""

    def __init__(self, path: Path):
        self.path = path

    def save_model(self, model: torch.nn.Module, filename: str = WEIGHTS) -> None:
        # save_model (not save_file) because AWD-LSTM shares tensors (encoder/encoder_dp, tied decoder).
        save_model(model, str(self.path / filename))

    def save_copy(self, filename: str, source: Path) -> None:
        """A copy of a file made elsewhere (e.g. the SentencePiece model a corpus was read with)."""
        shutil.copyfile(source, self.path / filename)

    def save_json(self, filename: str, obj: Any) -> None:
        (self.path / filename).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")

    def save_config(self, cfg: DictConfig) -> None:
        (self.path / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")


class Store:
    """A directory of entries, one sub-directory per stage, plus the read-only ``pretrain`` entries of the
    ``shipped`` folder (default ``ulmfit.SHIPPED_DIR``, the LMs shipped inside the package)."""

    def __init__(self, root: str | os.PathLike, shipped: str | os.PathLike | None = None):
        self.root = Path(root).expanduser()
        self.shipped = Path(shipped).expanduser() if shipped is not None else ulmfit.SHIPPED_DIR

    # ---- reading -------------------------------------------------------------------------------
    def _found(self, stage: str | None = None) -> list[Entry]:
        """Complete entries (a lineage.json, not hidden), without reading any of their files."""
        stages = [stage] if stage else sorted({p.name for p in self.root.glob("*") if p.is_dir()} | {SHIPPED_STAGE})
        found = {}
        for st in stages:
            # the shipped LMs first, so a local entry of the same name replaces one
            folders = [(self.root / st, False)]
            if st == SHIPPED_STAGE:
                folders.insert(0, (self.shipped, True))
            for folder, shipped in folders:
                for p in folder.glob("*"):
                    if p.is_dir() and not p.name.startswith(".") and (p / LINEAGE).is_file():
                        found[st, p.name] = Entry(st, p.name, p, shipped)
        return list(found.values())

    def entries(self, stage: str | None = None) -> list[Entry]:
        """Complete entries, oldest first (by creation time recorded in their lineage)."""
        return sorted(self._found(stage), key=lambda e: (e.created, e.name))

    def verify(self) -> list[tuple[Entry, list[tuple[str, str]] | None]]:
        """Every entry (by stage and name) with its damaged files (``Entry.problems``; None: nothing recorded)."""
        return [(e, e.problems()) for e in sorted(self._found(), key=lambda e: (e.stage, e.name))]

    def has(self, stage: str, name: str) -> bool:
        """Is there a complete entry ``stage/name``?"""
        return (self.root / stage / name / LINEAGE).is_file()

    def get(self, stage: str, name: str) -> Entry:
        if stage == SHIPPED_STAGE and not self.has(stage, name) and (self.shipped / name / LINEAGE).is_file():
            return Entry(stage, name, self.shipped / name, shipped=True)  # read-only, inside the package
        if not self.has(stage, name):
            names = [e.name for e in self.entries(stage)]
            hint = f"Available: {', '.join(names[-10:])}." if names else f"Run stage={stage} first."
            raise UsageError(f"No store entry '{stage}/{name}' in {self.root}. {hint}")
        return Entry(stage, name, self.root / stage / name)

    def latest(self, stage: str) -> Entry:
        entries = self.entries(stage)
        if not entries:
            raise UsageError(f"The store {self.root} has no '{stage}' entry yet. Run "
                             f"`python -m ulmfit stage={stage}` first, or point paths.store at the store "
                             f"that has one.")
        return entries[-1]

    def find(self, stage: str, name: str | None = None) -> Entry:
        """The named entry of ``stage``, or its latest when ``name`` is None/'latest'."""
        return self.latest(stage) if name in (None, "", "latest") else self.get(stage, name)

    # ---- writing -------------------------------------------------------------------------------
    def check_writable(self, stage: str, name: str) -> None:
        """Fail before any training if the entry could not be written."""
        if not _NAME_RE.match(name):
            raise UsageError(f"Run name '{name}' is not allowed: use letters, digits and . _ - = , + "
                             f"(set run_name=...).")
        if (self.root / stage / name).exists():
            raise UsageError(f"Store entry '{stage}/{name}' already exists in {self.root}; pick another "
                             f"run_name or delete that entry.")
        stage_dir = self.root / stage
        created = not stage_dir.exists()
        for attempt in range(3):  # another process (a data-parallel rank, a sweep job) may remove its probe folder
            try:
                stage_dir.mkdir(parents=True, exist_ok=True)
                probe = stage_dir / f".probe-{secrets.token_hex(4)}"
                probe.write_bytes(b"")
                probe.unlink()
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise UsageError(f"The store directory {self.root} is not writable (it keeps disappearing). "
                                     f"Set paths.store=<a writable directory>.") from None
            except OSError as e:
                raise UsageError(f"The store directory {self.root} is not writable ({e.strerror}). Set "
                                 f"paths.store=<a writable directory>.") from None
        if created:  # leave the store as it was until there is an entry to write
            try:
                stage_dir.rmdir()
            except OSError:  # a concurrent job (sweep) is writing there already
                pass

    @contextmanager
    def create(self, stage: str, name: str, lineage: dict[str, Any]) -> Iterator[EntryWriter]:
        """Write an entry atomically: files go to a hidden temp dir renamed into place on success.

        ``lineage`` is completed with the creation time and environment, then every file's size and sha256 are
        recorded in the manifest.
        """
        self.check_writable(stage, name)
        with atomic_path(self.root / stage / name, directory=True, exists="fail") as tmp:
            writer = EntryWriter(tmp)
            yield writer
            full = {"stage": stage, "name": name,
                    "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
                    **lineage, "environment": environment_info()}
            writer.save_json(LINEAGE, full)
            write_manifest(tmp)


def lineage_chain(store: Store, entry: Entry) -> list[Entry]:
    """The entry and its ancestors, newest first, following each lineage's ``parent``."""
    chain = [entry]
    while (parent := chain[-1].lineage.get("parent")) is not None:
        chain.append(store.get(parent["stage"], parent["name"]))
    return chain
