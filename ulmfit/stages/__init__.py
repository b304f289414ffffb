"""The stages ``stage=<name>`` runs, in one registry. Each reads its parent from the store, never from another
stage's module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import DictConfig

from ulmfit.errors import UsageError
from ulmfit.stages import (baselines, classify, evaluate, export_tokens, import_wt103, lm_finetune, perplexity,
                           pipeline, predict, pretrain, probe)


@dataclass(frozen=True)
class Stage:
    """A stage: its ``run(cfg)``, and how the pipeline's results table shows the entry it writes."""

    run: Callable[[DictConfig], Any]
    role: str = ""                  # the entry's label in that table
    summary: tuple[str, ...] = ()   # the metrics the table shows


# what a classifier's entry is scored by, per data.task (ulmfit.tasks): the table shows those the entry has
TEST_SCORES = ("test_accuracy", "test_error_rate", "test_micro_f1", "test_exact_match", "test_rmse", "test_spearman")

STAGES: dict[str, Stage] = {
    "pretrain": Stage(pretrain.run, "general-domain LM", ("valid_perplexity", "test_perplexity")),
    "lm_finetune": Stage(lm_finetune.run, "target-domain LM", ("valid_perplexity_before", "valid_perplexity")),
    "classify": Stage(classify.run, "ULMFiT classifier", TEST_SCORES),
    "probe": Stage(probe.run, "linear probe of the encoder", ("test_accuracy", "test_error_rate")),
    "pipeline": Stage(lambda cfg: pipeline.run(cfg, STAGES)),  # the steps' stages: this registry
    "predict": Stage(predict.run),
    "evaluate": Stage(evaluate.run),
    "perplexity": Stage(perplexity.run),
    "tfidf": Stage(baselines.run, "baseline: TF-IDF + LR", TEST_SCORES),
    "nbsvm": Stage(baselines.run, "baseline: NB-SVM", TEST_SCORES),
    "import_wt103": Stage(import_wt103.run, "general-domain LM"),  # writes a pretrain entry
    "export_tokens": Stage(export_tokens.run),  # writes a portable token file, not an entry
}


def get_stage(name: str) -> Callable[[DictConfig], Any]:
    """The ``run(cfg)`` function of stage ``name``."""
    if name not in STAGES:
        raise UsageError(f"Unknown stage {name!r}; choose one of: {', '.join(STAGES)} (stage=<name>).")
    return STAGES[name].run


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
