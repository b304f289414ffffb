"""Pipeline stages. Each reads its parent from the store, never from another stage's module."""

from __future__ import annotations

import importlib
from typing import Callable

from omegaconf import DictConfig

from ulmfit.errors import UsageError

STAGES = ("pretrain", "lm_finetune", "classify", "pipeline", "predict", "evaluate", "tfidf", "nbsvm")


def get_stage(name: str) -> Callable[[DictConfig], object]:
    """The ``run(cfg)`` function of stage ``name``."""
    if name not in STAGES:
        raise UsageError(f"Unknown stage {name!r}; choose one of: {', '.join(STAGES)} (stage=<name>).")
    return importlib.import_module(f"ulmfit.stages.{name}").run
