"""Pipeline stages. Each reads its parent from the store, never from another stage's module."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from omegaconf import DictConfig

from ulmfit.errors import UsageError

STAGES = ("pretrain", "lm_finetune", "classify", "pipeline", "predict", "evaluate", "tfidf", "nbsvm", "import_wt103")


def get_stage(name: str) -> Callable[[DictConfig], object]:
    """The ``run(cfg)`` function of stage ``name``."""
    if name not in STAGES:
        raise UsageError(f"Unknown stage {name!r}; choose one of: {', '.join(STAGES)} (stage=<name>).")
    return importlib.import_module(f"ulmfit.stages.{name}").run


def objective_value(result: Any, objective: str | None) -> float | None:
    """The metric a sweeper optimises (``objective=<metric>``): read from the entry the stage returned."""
    if not objective or result is None:  # no objective, or a data-parallel worker (rank 0 reports)
        return None
    metrics = getattr(result, "metrics", None)
    if metrics is None:
        raise UsageError(f"objective={objective} needs a stage that writes a store entry; this one does not.")
    if objective not in metrics or not isinstance(metrics[objective], (int, float)):
        numeric = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise UsageError(f"objective={objective} is not a metric of {result.ref}; choose one of {', '.join(numeric)}.")
    return float(metrics[objective])
