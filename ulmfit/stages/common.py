"""Glue every stage shares: opening the store, finding the parent, writing the entry."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from omegaconf import DictConfig

from ulmfit import tracking
from ulmfit.checkpoint import ResumeState, RunCheckpoint
from ulmfit.errors import UsageError
from ulmfit.models import encoder_of
from ulmfit.report import print_table
from ulmfit.store import Entry, Store, new_run_name
from ulmfit.transfer import ENCODER_WEIGHTS


def open_store(cfg: DictConfig, stage: str) -> tuple[Store, str]:
    """The store and this run's entry name, checked writable before any work starts."""
    store, name = Store(cfg.paths.store), cfg.run_name or new_run_name()
    store.check_writable(stage, name)
    return store, name


def open_run(cfg: DictConfig, stage: str) -> tuple[Store, str, RunCheckpoint, ResumeState | None]:
    """``open_store`` for a training stage: also its per-epoch checkpoints, and the state to continue from
    when ``resume=true`` (refused without a run_name or a checkpoint, or with a different model/data config)."""
    if cfg.get("resume") and not cfg.run_name:
        raise UsageError("resume=true needs the interrupted run's name: add run_name=<name> (the hidden "
                         f"'.resume-<name>' directory under {cfg.paths.store}/{stage}/).")
    store, name = open_store(cfg, stage)
    checkpoint = RunCheckpoint(store.root, stage, name, cfg)
    return store, name, checkpoint, checkpoint.prepare(bool(cfg.get("resume")))


def find_parent(store: Store, stage: str, name: str | None) -> Entry | None:
    """``stage.parent``: an entry name, null/latest for the newest, or 'none' for no parent (random init)."""
    return None if name == "none" else store.find(stage, name)


def parent_ref(parent: Entry | None) -> dict[str, str] | None:
    return {"stage": parent.stage, "name": parent.name, "created": parent.created} if parent else None


def save_entry(store: Store, stage: str, name: str, cfg: DictConfig, *, model: torch.nn.Module,
               vocab: list[str], info: Mapping[str, Any], metrics: Mapping[str, Any],
               lineage: Mapping[str, Any], save_encoder: bool = False,
               curves: Mapping[str, Any] | None = None, checkpoint: RunCheckpoint | None = None) -> Entry:
    """Write a complete entry atomically and print its metrics (``curves``: per-step training curves).
    A training run's ``checkpoint`` is recorded in the lineage when the run was resumed, then removed."""
    lineage = dict(lineage)
    if checkpoint is not None and checkpoint.resumed:
        lineage["resumed"] = checkpoint.resumed
    with store.create(stage, name, lineage) as w:
        w.save_model(model)
        if save_encoder:  # what classify loads; lets any LM entry (pretrain or lm_finetune) feed it
            w.save_model(encoder_of(model), ENCODER_WEIGHTS)
        w.save_json("vocab.json", vocab)
        w.save_json("model.json", dict(info))
        w.save_json("metrics.json", dict(metrics))
        if curves is not None:
            w.save_json("curves.json", dict(curves))
        w.save_config(cfg)
    entry = store.get(stage, name)
    if checkpoint is not None:
        checkpoint.discard()
    tracking.current().log_summary(metrics)
    print_table(f"{stage} -> {entry.path}", metrics)
    return entry
