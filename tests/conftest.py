"""Shared fixtures: compose the real config tree, shrunk to tiny CPU sizes."""

from __future__ import annotations

import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastcore.basics import num_cpus
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ulmfit import SAMPLE_DIR
from ulmfit.config import CONF_DIR

REPO = Path(__file__).resolve().parents[1]

# Parallel test workers (pyproject's `-n auto`): one per core, but each holds torch + fastai + spaCy and starts
# `python -m ulmfit` subprocesses of its own, so not more than this many.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    return max(1, min(num_cpus(), MAX_WORKERS))


def pytest_configure(config: pytest.Config) -> None:
    """In a parallel worker, give torch its share of the cores: oversubscribed OpenMP threads spin and slow
    every worker down. The environment variable reaches CLI subprocesses and notebook kernels."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch
        threads = max(1, num_cpus() // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


# A few-second training run: tiny model, one epoch, small batches.
TINY = ["model=awd_lstm_tiny", "train.epochs=1", "train.bs=16", "train.bptt=20", "train.eval_bs=8",
        "tokenizer.n_workers=0", "train.device=cpu"]


@pytest.fixture(scope="session")
def mini_wikitext(tmp_path_factory) -> Path:
    """The first ~12 articles of the embedded WikiText-2 train split, plus its valid/test, as plain files."""
    root = tmp_path_factory.mktemp("mini_wikitext")
    for split, max_lines in [("train", 400), ("valid", 120), ("test", 120)]:
        with lzma.open(SAMPLE_DIR / "wikitext-2" / f"wiki.{split}.tokens.xz", "rt", encoding="utf-8") as fh:
            lines = [line for _, line in zip(range(max_lines), fh)]
        (root / f"wiki.{split}.tokens").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture
def make_cfg(tmp_path):
    """Compose the real config with overrides; the store and cache live in this test's tmp dir."""
    def _make(*overrides: str, root: Path | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=[f"paths.root={root or tmp_path}", *overrides])
    return _make


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m ulmfit ...`` in a subprocess, as a user runs it."""
    full_env = {**os.environ, "ULMFIT_HOME": str(cwd), **(env or {})}
    return subprocess.run([sys.executable, "-m", "ulmfit", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def mini_imdb(tmp_path_factory) -> Path:
    """A few embedded IMDB reviews as CSVs (train 160 / test 60 / unsup 60), cut to ~80 words each."""
    import pandas as pd
    root = tmp_path_factory.mktemp("mini_imdb")
    for part, n in [("train", 160), ("test", 60), ("unsup", 60)]:
        df = pd.read_csv(SAMPLE_DIR / "imdb" / f"{part}.csv.xz")
        if part != "unsup":  # balanced classes
            df = df.groupby("label", group_keys=False).head(n // 2)
        df = df.head(n).assign(text=lambda d: d.text.str.split().str[:80].str.join(" "))
        df.to_csv(root / f"{part}.csv", index=False)
    return root


def step_mapping(*overrides: str) -> str:
    """``key=value`` overrides as one pipeline step's mapping on the command line (``{key:'value',...}``)."""
    return "{" + ",".join(f"{k}:'{v}'" for k, v in (o.split("=", 1) for o in overrides)) + "}"


def imdb_csv(root: Path) -> list[str]:
    """Overrides that read ``mini_imdb`` through the generic CSV reader."""
    return ["data=csv", f"data.files.train={root / 'train.csv'}", f"data.files.test={root / 'test.csv'}",
            f"data.files.unsup={root / 'unsup.csv'}", "data.min_freq=1"]
