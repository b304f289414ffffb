"""The store: atomic entries, lookup by name or latest, safetensors weights incl. tied tensors."""

from __future__ import annotations

import json

import pytest
import torch

from ulmfit import UsageError
from ulmfit.models import build_language_model, model_info
from ulmfit.store import Store, lineage_chain

TINY_MODEL = {"arch": "awd_lstm", "emb_sz": 8, "n_hid": 12, "n_layers": 2, "output_p": 0.1, "hidden_p": 0.1,
              "input_p": 0.1, "embed_p": 0.0, "weight_p": 0.1, "tie_weights": True, "out_bias": True}


@pytest.fixture(autouse=True)
def no_shipped_lm(tmp_path, monkeypatch):
    """These tests count a store's own entries: hide the package's shipped LM (tests/test_shipped.py covers it)."""
    from ulmfit import shipped
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "no-shipped-lm")


def _write(store, stage, name, parent=None):
    with store.create(stage, name, {"parent": parent}) as w:
        w.save_json("metrics.json", {"x": 1.0})
    return store.get(stage, name)


def test_crash_mid_write_leaves_no_entry(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with store.create("pretrain", "run1", {"parent": None}) as w:
            w.save_json("metrics.json", {"x": 1})
            raise RuntimeError("boom")
    assert store.entries() == []
    assert list((tmp_path / "pretrain").iterdir()) == []  # temp dir removed too
    with pytest.raises(UsageError, match="no 'pretrain' entry"):
        store.latest("pretrain")


def test_half_written_dir_is_invisible(tmp_path):
    """A dir without lineage.json (e.g. a kill -9 between files) is never listed or loaded."""
    store = Store(tmp_path)
    (tmp_path / "pretrain" / "partial").mkdir(parents=True)
    (tmp_path / "pretrain" / "partial" / "model.safetensors").write_bytes(b"xx")
    assert store.entries("pretrain") == []
    with pytest.raises(UsageError, match="No store entry"):
        store.get("pretrain", "partial")


def test_find_by_name_latest_and_lineage(tmp_path):
    store = Store(tmp_path)
    a = _write(store, "pretrain", "a")
    b = _write(store, "pretrain", "b")
    c = _write(store, "lm_finetune", "c", parent={"stage": "pretrain", "name": "a"})
    assert store.find("pretrain") == b and store.find("pretrain", "a") == a
    assert [e.ref for e in store.entries()] == ["pretrain/a", "pretrain/b", "lm_finetune/c"]  # creation order
    assert [e.ref for e in lineage_chain(store, c)] == ["lm_finetune/c", "pretrain/a"]
    lin = c.lineage
    assert lin["environment"]["ulmfit"] and lin["created"] and lin["parent"]["name"] == "a"
    with pytest.raises(UsageError, match="Available: a, b"):
        store.get("pretrain", "zzz")


def test_existing_name_and_bad_name_are_refused(tmp_path):
    store = Store(tmp_path)
    _write(store, "pretrain", "a")
    with pytest.raises(UsageError, match="already exists"):
        _write(store, "pretrain", "a")
    with pytest.raises(UsageError, match="not allowed"):
        store.check_writable("pretrain", "../escape")


def test_unwritable_store(tmp_path):
    (tmp_path / "file").write_text("not a dir")
    with pytest.raises(UsageError, match="not writable"):
        Store(tmp_path / "file" / "store").check_writable("pretrain", "a")


def test_weights_round_trip_with_tied_embeddings(tmp_path):
    info = model_info(TINY_MODEL, vocab_size=16, drop_mult=1.0)
    model = build_language_model(info)
    assert model[1].decoder.weight is model[0].encoder.weight  # tied
    store = Store(tmp_path)
    with store.create("pretrain", "w", {"parent": None}) as w:
        w.save_model(model)
        w.save_json("model.json", info)
    entry = store.get("pretrain", "w")
    fresh = build_language_model(entry.model_info)
    entry.load_weights(fresh)
    for (k, v), (_, v2) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(v, v2), k
    assert fresh[1].decoder.weight is fresh[0].encoder.weight
    assert json.loads((entry.path / "model.json").read_text())["vocab_size"] == 16


def test_corrupted_weights_file(tmp_path):
    store = Store(tmp_path)
    with store.create("pretrain", "w", {"parent": None}) as w:
        w.save_model(build_language_model(model_info(TINY_MODEL, 16, 1.0)))
    entry = store.get("pretrain", "w")
    data = (entry.path / "model.safetensors").read_bytes()
    (entry.path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match="truncated or corrupted"):
        entry.state_dict()


def test_lineage_records_the_environment(tmp_path):
    """What ran is recorded with every entry (ulmfit.environment): versions, commit, allocator, peak memory."""
    from ulmfit.environment import peak_rss_mb
    env = _write(Store(tmp_path), "pretrain", "a").lineage["environment"]
    assert {"ulmfit", "git_commit", "python", "torch", "fastai", "platform", "processes", "malloc"} <= set(env)
    assert 0 < env["peak_rss_mb"] <= peak_rss_mb()
