"""Stage ``nbsvm``: NB-SVM (Wang & Manning 2012) baseline (see ``ulmfit.stages.baseline``)."""

from omegaconf import DictConfig

from ulmfit.stages.baseline import run_baseline
from ulmfit.store import Entry


def run(cfg: DictConfig) -> Entry:
    return run_baseline(cfg, "nbsvm")
