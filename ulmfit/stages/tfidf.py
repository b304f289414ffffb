"""Stage ``tfidf``: TF-IDF word 1–2-grams + logistic regression baseline (see ``ulmfit.stages.baseline``)."""

from omegaconf import DictConfig

from ulmfit.stages.baseline import run_baseline
from ulmfit.store import Entry


def run(cfg: DictConfig) -> Entry:
    return run_baseline(cfg, "tfidf")
