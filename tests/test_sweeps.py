"""Sweeps through Hydra's launchers and the Optuna sweeper: every job writes its own complete store entry."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import TINY, run_cli


def _entries(root, stage="pretrain"):
    return {p.name: json.loads((p / "metrics.json").read_text()) for p in sorted((root / "store" / stage).iterdir())
            if (p / "lineage.json").is_file()}


def _sweep(tmp_path, mini_wikitext, *args):
    out = run_cli("-m", "stage=pretrain", "data=wikitext2", f"data.root={mini_wikitext}", *TINY, *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    return _entries(tmp_path)


@pytest.mark.parametrize("launcher", ["parallel", "local_processes"])  # joblib (loky) and submitit's local executor
def test_launcher_sweep_writes_one_entry_per_job(tmp_path, mini_wikitext, launcher):
    pytest.importorskip({"parallel": "hydra_plugins.hydra_joblib_launcher",
                         "local_processes": "hydra_plugins.hydra_submitit_launcher"}[launcher])
    entries = _sweep(tmp_path, mini_wikitext, f"hydra/launcher={launcher}", "train.lr=1e-3,3e-3")
    assert len(entries) == 2
    assert {m["valid_loss"] > 0 for m in entries.values()} == {True}
    configs = [yaml.safe_load((tmp_path / "store" / "pretrain" / n / "config.yaml").read_text()) for n in entries]
    assert sorted(c["train"]["lr"] for c in configs) == [1e-3, 3e-3]


def test_slurm_launcher_config_composes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    out = run_cli("stage=pretrain", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    launcher = yaml.safe_load(out.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["partition"] == "gpu"
    assert launcher["gpus_per_node"] == 1


def test_optuna_search_minimises_the_entries_valid_loss(tmp_path, mini_wikitext):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    entries = _sweep(tmp_path, mini_wikitext, "experiment=lr_search", "hydra.sweeper.n_trials=3",
                     "hydra.sweeper.n_jobs=1")
    assert len(entries) == 3
    results = next(tmp_path.glob("outputs/multirun/*/optimization_results.yaml"))
    best = yaml.safe_load(results.read_text())
    assert best["best_value"] == pytest.approx(min(m["valid_loss"] for m in entries.values()))
    lrs = [yaml.safe_load((tmp_path / "store" / "pretrain" / n / "config.yaml").read_text())["train"]["lr"]
           for n in entries]
    assert all(1e-4 <= lr <= 3e-2 for lr in lrs) and len(set(lrs)) == 3


def test_objective_must_be_a_metric(tmp_path, mini_wikitext):
    out = run_cli("stage=pretrain", "data=wikitext2", f"data.root={mini_wikitext}", *TINY, "objective=nope",
                  cwd=tmp_path)
    assert out.returncode == 2 and "objective=nope is not a metric" in out.stderr
