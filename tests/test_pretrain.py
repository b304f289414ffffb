"""A tiny pretraining run: the loss goes down and a complete store entry appears."""

from __future__ import annotations

import json
import math

import pytest

from ulmfit.stages.pretrain import run
from ulmfit.store import Store
from tests.conftest import TINY, run_cli


@pytest.fixture(scope="module")
def tiny_entry(tmp_path_factory, mini_wikitext):
    from hydra import compose, initialize_config_dir
    from ulmfit.config import CONF_DIR
    root = tmp_path_factory.mktemp("pretrain")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.root={root}", "stage=pretrain", "data=wikitext2",
                                           f"data.root={mini_wikitext}", *TINY, "train.epochs=3",
                                           "train.lr=1e-2", "run_name=tiny"])
    return run(cfg), root


def test_loss_goes_down(tiny_entry):
    entry, _ = tiny_entry
    m = entry.metrics
    losses = [h["train_loss"] for h in m["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert m["valid_loss"] < math.log(m["vocab_size"])  # better than a uniform guess
    assert m["valid_perplexity"] == pytest.approx(math.exp(m["valid_loss"]))
    assert "test_perplexity" in m and m["tokens_per_second"] > 0


def test_entry_is_complete(tiny_entry):
    entry, root = tiny_entry
    files = {p.name for p in entry.path.iterdir()}
    assert files == {"model.safetensors", "vocab.json", "model.json", "metrics.json", "curves.json",
                     "config.yaml", "lineage.json", "manifest.json"}
    assert set(json.loads((entry.path / "manifest.json").read_text())["files"]) == files - {"manifest.json"}
    lineage = json.loads((entry.path / "lineage.json").read_text())
    assert lineage["parent"] is None and len(lineage["data"]["fingerprint"]) == 24
    assert {"ulmfit", "torch", "fastai", "git_commit", "malloc"} <= set(lineage["environment"])
    assert lineage["environment"]["peak_rss_mb"] > 50  # a training process holds torch + data
    assert entry.model_info["vocab_size"] == len(entry.vocab)
    assert entry.config().train.epochs == 3
    assert Store(root / "store").find("pretrain").name == "tiny"


def test_cli_pretrain_then_cache_hit(tmp_path, mini_wikitext):
    args = ["stage=pretrain", "data=wikitext2", f"data.root={mini_wikitext}", *TINY]
    first = run_cli(*args, "run_name=one", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "valid_perplexity" in first.stdout
    second = run_cli(*args, "run_name=two", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    store = Store(tmp_path / "store")
    assert store.get("pretrain", "one").metrics["tokenize_cache_hit"] is False
    assert store.get("pretrain", "two").metrics["tokenize_cache_hit"] is True


def test_cli_usage_error_exits_2_and_writes_nothing(tmp_path):
    out = run_cli("stage=pretrain", "data=wikitext2", f"data.root={tmp_path / 'nowhere'}", *TINY, cwd=tmp_path)
    assert out.returncode == 2
    assert "does not exist" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "store" / "pretrain").exists() or not any((tmp_path / "store" / "pretrain").iterdir())


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_wandb_offline_logs_and_unreachable_online_only_warns(mode, tmp_path, mini_wikitext, caplog, monkeypatch):
    """Offline: a local W&B run is written. Online without credentials/network: a warning, and the run
    still finishes with its metrics in the store."""
    from hydra import compose, initialize_config_dir
    from ulmfit.config import CONF_DIR
    from ulmfit.tracking import tracking
    caplog.set_level("INFO", logger="ulmfit.tracking")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.root={tmp_path}", "stage=pretrain", "data=wikitext2",
                                           f"data.root={mini_wikitext}", *TINY, "logger=wandb",
                                           f"logger.mode={mode}", "logger.init_timeout=5", "run_name=w"])
    with tracking(cfg) as tracker:
        entry = run(cfg)
    assert "valid_perplexity" in entry.metrics
    runs = list((tmp_path / "outputs" / "wandb").glob("offline-run-*/*.wandb"))
    if mode == "offline":
        assert tracker.run is not None and len(runs) == 1 and runs[0].stat().st_size > 0
        assert f"wandb sync {runs[0].parent}" in caplog.text  # the folder `wandb sync` takes, not its files/
    else:
        assert tracker.run is None and "W&B could not start" in caplog.text


def test_wandb_leaves_nothing_for_a_run_that_fails_before_training(tmp_path):
    out = run_cli("stage=pretrain", "data=wikitext2", f"data.root={tmp_path / 'nowhere'}", *TINY, "logger=wandb",
                  cwd=tmp_path, env={"WANDB_CONFIG_DIR": str(tmp_path / "wandb-config")})
    assert out.returncode == 2 and "does not exist" in out.stderr
    assert not (tmp_path / "outputs" / "wandb").exists()
