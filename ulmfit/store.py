"""The checkpoint store: the contract between stages.

One entry per run at ``<root>/<stage>/<run-name>/``::

    model.safetensors   weights (safetensors: loading never unpickles)
    vocab.json          the token list, index = id
    model.json          what to rebuild: architecture, its config, vocab size, direction
    config.yaml         the fully resolved Hydra config of the run
    metrics.json        final (and per-epoch) metrics
    lineage.json        parent entry, data fingerprint, versions, git commit; written last

Entries are written into a hidden temporary directory and renamed into place only when complete, so a
crash never leaves an entry that a later stage would load. ``python -m ulmfit.store`` lists entries.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_model

from ulmfit.environment import environment_info
from ulmfit.errors import UsageError
from ulmfit.shipped import STAGE as SHIPPED_STAGE, as_fp32, shipped_dir

WEIGHTS = "model.safetensors"
LINEAGE = "lineage.json"  # written last: its presence marks a complete entry
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=,+-]*$")


def new_run_name() -> str:
    """A sortable, collision-safe default name (sweep jobs may start within the same second)."""
    return f"{dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Entry:
    """A complete store entry (read-only view)."""

    stage: str
    name: str
    path: Path

    @property
    def ref(self) -> str:
        return f"{self.stage}/{self.name}"

    def read_json(self, filename: str) -> Any:
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
        return OmegaConf.load(self.path / "config.yaml")

    def state_dict(self, filename: str = WEIGHTS) -> dict[str, torch.Tensor]:
        """Raw tensors (tied/shared tensors appear once, under one of their names)."""
        try:
            return as_fp32(load_file(self.path / filename))  # a shipped entry stores fp16
        except Exception as e:  # safetensors raises several types for truncated/corrupt files
            raise UsageError(f"Cannot read weights {self.path / filename}: {e}. The file is truncated or "
                             f"corrupted; re-run stage '{self.stage}' to recreate it.") from None

    def load_weights(self, model: torch.nn.Module, filename: str = WEIGHTS, strict: bool = True) -> None:
        """Load weights into ``model`` (handles the tied embedding/decoder weights)."""
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
    """Writes the files of one entry into its temporary directory."""

    def __init__(self, path: Path):
        self.path = path

    def save_model(self, model: torch.nn.Module, filename: str = WEIGHTS) -> None:
        # save_model (not save_file) because AWD-LSTM shares tensors (encoder/encoder_dp, tied decoder).
        save_model(model, str(self.path / filename))

    def save_json(self, filename: str, obj: Any) -> None:
        (self.path / filename).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")

    def save_config(self, cfg: DictConfig) -> None:
        (self.path / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")


class Store:
    """A directory of entries, one sub-directory per stage."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    # ---- reading -------------------------------------------------------------------------------
    def entries(self, stage: str | None = None) -> list[Entry]:
        """Complete entries, oldest first (by creation time recorded in their lineage)."""
        stages = [stage] if stage else sorted({p.name for p in self.root.glob("*") if p.is_dir()} | {SHIPPED_STAGE})
        found = {}
        for st in stages:
            # the package's shipped LMs first, so a local entry of the same name replaces one
            folders = [shipped_dir(), self.root / st] if st == SHIPPED_STAGE else [self.root / st]
            for folder in folders:
                for p in folder.glob("*"):
                    if p.is_dir() and not p.name.startswith(".") and (p / LINEAGE).is_file():
                        found[st, p.name] = Entry(st, p.name, p)
        return sorted(found.values(), key=lambda e: (e.created, e.name))

    def has(self, stage: str, name: str) -> bool:
        """Is there a complete entry ``stage/name``?"""
        return (self.root / stage / name / LINEAGE).is_file()

    def get(self, stage: str, name: str) -> Entry:
        if stage == SHIPPED_STAGE and not self.has(stage, name) and (shipped_dir() / name / LINEAGE).is_file():
            return Entry(stage, name, shipped_dir() / name)  # read-only, inside the package
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
        try:
            stage_dir.mkdir(parents=True, exist_ok=True)
            probe = stage_dir / f".probe-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
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

        ``lineage`` is completed with the creation time and environment and written last.
        """
        self.check_writable(stage, name)
        tmp = self.root / stage / f".tmp-{name}-{secrets.token_hex(4)}"
        tmp.mkdir(parents=True)
        try:
            writer = EntryWriter(tmp)
            yield writer
            full = {"stage": stage, "name": name,
                    "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
                    **lineage, "environment": environment_info()}
            writer.save_json(LINEAGE, full)
            os.rename(tmp, self.root / stage / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def lineage_chain(store: Store, entry: Entry) -> list[Entry]:
    """The entry and its ancestors, newest first, following each lineage's ``parent``."""
    chain = [entry]
    while (parent := chain[-1].lineage.get("parent")) is not None:
        chain.append(store.get(parent["stage"], parent["name"]))
    return chain


def main(argv: list[str] | None = None) -> int:
    """`python -m ulmfit.store [--root DIR] [STAGE]`: list entries with their key metrics;
    `--compare STAGE [--sort METRIC]`: what differs between them (a sweep's overrides) and their metrics."""
    import argparse
    ap = argparse.ArgumentParser(prog="python -m ulmfit.store", description=main.__doc__)
    ap.add_argument("stage", nargs="?", help="only this stage")
    default = os.environ.get("ULMFIT_STORE") or str(Path(os.environ.get("ULMFIT_HOME", ".")) / "store")
    ap.add_argument("--root", default=default, help=f"the store directory (default: {default}, as paths.store)")
    ap.add_argument("--compare", metavar="STAGE", help="a table of the STAGE entries: differing options, metrics")
    ap.add_argument("--sort", metavar="COLUMN", help="with --compare: best first by this metric or option")
    ap.add_argument("--match", metavar="TEXT", help="with --compare: only entries whose name contains TEXT")
    args = ap.parse_args(argv)
    store = Store(args.root)
    if args.compare:
        from ulmfit.compare import compare
        entries = [e for e in store.entries(args.compare) if not args.match or args.match in e.name]
        if not entries:
            print(f"No {args.compare} entries{' matching ' + args.match if args.match else ''} in {store.root}.",
                  file=sys.stderr)
            return 2
        try:
            table = compare(entries, args.sort)
        except KeyError:
            print(f"--sort {args.sort}: not a column; choose one of {', '.join(compare(entries).columns)}.",
                  file=sys.stderr)
            return 2
        print(table.to_string(float_format=lambda v: f"{v:.4g}"))
        return 0
    for e in store.entries(args.stage):
        lin = e.lineage
        parent = lin.get("parent")
        m = {k: v for k, v in e.metrics.items() if isinstance(v, (int, float))}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in list(m.items())[:4])
        print(f"{e.ref:45s} {lin['created'][:19]}  parent={parent['stage'] + '/' + parent['name'] if parent else '-'}  {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
