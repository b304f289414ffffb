"""Runs side by side: what differs in their configs (a sweep's overrides) and their key metrics, sortable.

``python -m ulmfit.store --compare lm_finetune --sort valid_loss`` prints it; ``compare(entries)`` returns it as
a DataFrame for notebooks."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
from omegaconf import OmegaConf

from ulmfit.checkpoint import IGNORED_ON_RESUME
from ulmfit.store import Entry

# Keys that differ between runs without changing what they compute: those a resume may change, and the names.
IGNORED = (*IGNORED_ON_RESUME, "run_name", "hydra", "objective")
KEY_METRICS = ("valid_loss", "valid_perplexity", "test_perplexity", "valid_accuracy", "test_accuracy",
               "test_error_rate", "test_micro_f1", "test_exact_match", "test_rmse", "test_spearman", "train_seconds")
LOWER_IS_BETTER = ("loss", "perplexity", "error", "seconds", "rmse", "mae")


def lower_is_better(metric: str) -> bool:
    return any(word in metric for word in LOWER_IS_BETTER)


def compare(entries: Sequence[Entry], sort: str | None = None) -> pd.DataFrame:
    """One row per entry: the config keys whose values differ among ``entries``, then the key metrics they have;
    sorted by ``sort`` (best first: ascending for losses, perplexities, errors and times, else descending)."""
    if not entries:
        return pd.DataFrame()
    configs = pd.DataFrame([pd.json_normalize(OmegaConf.to_container(e.config())).iloc[0].to_dict() for e in entries],
                           index=[e.name for e in entries])
    configs = configs[[c for c in configs.columns if not any(c == k or c.startswith(k + ".") for k in IGNORED)]]
    differing = [c for c in configs.columns if configs[c].astype(str).nunique(dropna=False) > 1]
    metrics = pd.DataFrame([{k: v for k, v in e.metrics.items() if k in KEY_METRICS} for e in entries],
                           index=configs.index)
    table = pd.concat([configs[differing], metrics[[m for m in KEY_METRICS if m in metrics]]], axis=1)
    table.index.name = "entry"
    if sort is not None:
        if sort not in table.columns:
            raise KeyError(sort)
        table = table.sort_values(sort, ascending=lower_is_better(sort), na_position="last")
    return table
