"""Data-parallel training through ``accelerate launch`` (fastai's DistributedTrainer, DDP with gloo on CPU):
2 processes train on halves of the batches, only rank 0 writes, and the entry is complete and loadable."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY, imdb_csv, run_cli
from ulmfit.store import Store

ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ULMFIT_HOME": str(home), "OMP_NUM_THREADS": "1"}
    # Not accelerate's fixed default port (29500): parallel test workers may launch two groups at once.
    cmd = [*ACCELERATE, "--main_process_port", str(_free_port()), "-m", "ulmfit", *args]
    return subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("stage", ["pretrain", "classify"])
def test_two_process_data_parallel_run_writes_one_valid_entry(stage, mini_wikitext, mini_imdb, tmp_path):
    if stage == "pretrain":
        args = ["stage=pretrain", "data=wikitext2", f"data.root={mini_wikitext}", *TINY, "train.epochs=2"]
    else:
        pre = run_cli("stage=pretrain", "data=wikitext2", f"data.root={mini_wikitext}", "run_name=pre", *TINY,
                      cwd=tmp_path)
        assert pre.returncode == 0, pre.stderr[-2000:]
        args = ["stage=classify", *imdb_csv(mini_imdb), "stage.parent_stage=pretrain", "stage.parent=pre", *TINY,
                "train.bs=8"]
    out = _launch(tmp_path, *args, "run_name=ddp")
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]

    store = Store(tmp_path / "store")
    entry = store.get(stage, "ddp")
    assert [e.name for e in store.entries(stage) if e.path.parent == store.root / stage] == ["ddp"]  # once, by rank 0
    assert not [p for p in (tmp_path / "store" / stage).iterdir() if p.name.startswith(".")], "leftover tmp/checkpoint"
    assert entry.lineage["environment"]["processes"] == 2
    metrics = entry.metrics
    # Each process trained on half of the batches: rank 0 recorded half of a single process's steps per epoch.
    curves = json.loads((entry.path / "curves.json").read_text())
    if stage == "pretrain":
        bs, bptt = 16, 20
        n_batches = math.ceil(((metrics["train_tokens"] - 1) // bs) / bptt)
        assert len(curves["step"]) == 2 * math.ceil(n_batches / 2)
        assert math.isfinite(metrics["test_perplexity"]) and metrics["valid_perplexity"] < 7000
    else:
        n_batches = math.ceil(metrics["n_train"] / 8)
        assert curves["phase_start"][1] == math.ceil(n_batches / 2)  # steps of the first (head-only) phase
        assert 0.0 <= metrics["test_accuracy"] <= 1.0 and len(metrics["phases"]) == 4
    # The entry works downstream like any other.
    from ulmfit.models import build_language_model, build_classifier
    model = (build_language_model if stage == "pretrain" else build_classifier)(entry.model_info)
    entry.load_weights(model)
