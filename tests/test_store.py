"""The store: atomic entries, lookup by name or latest, safetensors weights incl. tied tensors."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest
import torch

import ulmfit
from ulmfit import UsageError
from ulmfit.models import build_language_model, model_info
from ulmfit.store import Store, lineage_chain
from ulmfit.store.cli import main as store_cli

TINY_MODEL = {"arch": "awd_lstm", "emb_sz": 8, "n_hid": 12, "n_layers": 2, "output_p": 0.1, "hidden_p": 0.1,
              "input_p": 0.1, "embed_p": 0.0, "weight_p": 0.1, "tie_weights": True, "out_bias": True}


@pytest.fixture(autouse=True)
def no_shipped_lm(tmp_path, monkeypatch):
    """These tests count a store's own entries: hide the package's shipped LM (tests/test_shipped.py covers it)."""
    monkeypatch.setattr(ulmfit, "SHIPPED_DIR", tmp_path / "no-shipped-lm")


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


def _lm_entry(store, name="w"):
    info = model_info(TINY_MODEL, 16, 1.0)
    with store.create("pretrain", name, {"parent": None}) as w:
        w.save_model(build_language_model(info))
        w.save_json("model.json", info)
        w.save_json("vocab.json", [f"t{i}" for i in range(16)])
    return store.get("pretrain", name)


def _flip_byte(path, offset=-100):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01  # inside the last tensor's data: safetensors itself reads it without complaint
    path.write_bytes(bytes(data))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _one_line_naming(e, entry, filename):
    message = str(e.value)
    assert "\n" not in message and entry.ref in message and filename in message, message
    return message


def test_every_file_is_recorded_with_its_sha256(tmp_path):
    entry = _lm_entry(Store(tmp_path))
    manifest = json.loads((entry.path / "manifest.json").read_text())
    files = {p.name for p in entry.path.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == files == {"model.safetensors", "model.json", "vocab.json", "lineage.json"}
    for name, rec in manifest["files"].items():
        data = (entry.path / name).read_bytes()
        assert rec == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert entry.problems() == []


def test_a_flipped_byte_in_the_weights_is_refused(tmp_path):
    """The case that once trained silently on corrupted weights: the file still parses, its bytes differ."""
    entry = _lm_entry(Store(tmp_path))
    _flip_byte(entry.path / "model.safetensors")
    with pytest.raises(UsageError) as e:
        entry.load_weights(build_language_model(entry.model_info))
    assert "does not match the sha256" in _one_line_naming(e, entry, "model.safetensors")
    with pytest.raises(UsageError, match="model.safetensors does not match"):
        entry.state_dict()
    assert entry.model_info["vocab_size"] == 16  # the other files still read


@pytest.mark.parametrize("parent", ["pre", None, "latest"])
def test_a_damaged_parent_is_refused_when_it_is_found(tmp_path, parent):
    """find_parent checks every file of the parent against its manifest, so a stage stops before it reads any
    data, with the line loading the weights would have given; an entry without a manifest is found unchecked."""
    from ulmfit.stages.common import find_parent

    store = Store(tmp_path)
    entry = _lm_entry(store, "pre")
    assert find_parent(store, "pretrain", parent) == entry
    _flip_byte(entry.path / "model.safetensors")
    with pytest.raises(UsageError) as found:
        find_parent(store, "pretrain", parent)
    with pytest.raises(UsageError) as loaded:
        entry.load_weights(build_language_model(entry.model_info))
    assert _one_line_naming(found, entry, "model.safetensors") == str(loaded.value)
    (entry.path / "manifest.json").unlink()  # an entry written before manifests: loaded unverified, as before
    assert find_parent(store, "pretrain", parent) == entry


@pytest.mark.parametrize("damage, expected", [(_truncate, "is truncated"), (lambda p: p.unlink(), "is missing")])
def test_a_truncated_or_missing_file_is_refused(tmp_path, damage, expected):
    entry = _lm_entry(Store(tmp_path))
    damage(entry.path / "model.safetensors")
    with pytest.raises(UsageError) as e:
        entry.state_dict()
    assert expected in _one_line_naming(e, entry, "model.safetensors")
    vocab = entry.path / "vocab.json"
    vocab.write_text(vocab.read_text().replace("t1", "t7"))  # still valid JSON of the right length
    with pytest.raises(UsageError, match="vocab.json does not match"):
        entry.vocab


def test_an_entry_written_before_manifests_loads_unverified(tmp_path, caplog):
    entry = _lm_entry(Store(tmp_path))
    (entry.path / "manifest.json").unlink()
    model = build_language_model(entry.model_info)
    with caplog.at_level("WARNING", logger="ulmfit.store"):
        entry.load_weights(model)
    assert "loaded unverified" in caplog.text and entry.problems() is None
    _truncate(entry.path / "model.safetensors")  # the reader's own checks still apply
    with pytest.raises(UsageError, match="truncated or corrupted"):
        entry.state_dict()


def test_the_shipped_lm_is_checked_against_the_checksum_in_its_lineage(tmp_path):
    """A shipped LM exported before manifests (as general-lm was) is checked against the weights' sha256 and size
    its lineage records."""
    shipped = tmp_path / "pretrained"
    shutil.copytree(ulmfit.PACKAGE_DIR / "pretrained" / "general-lm", shipped / "general-lm")
    (shipped / "general-lm" / "manifest.json").unlink()
    store = Store(tmp_path / "store", shipped=shipped)
    entry = store.get("pretrain", "general-lm")
    assert entry.problems() == [] and entry.record()[1] is False  # the weights only
    assert entry.state_dict()["0.encoder.weight"].dtype == torch.float32
    _flip_byte(entry.path / "model.safetensors", offset=len(entry.path.joinpath("model.safetensors").read_bytes()) // 2)
    with pytest.raises(UsageError, match="Reinstall the ulmfit package") as e:
        entry.state_dict()
    _one_line_naming(e, entry, "model.safetensors")


def test_verify_reports_every_damaged_file_of_a_store(tmp_path, capsys):
    store = Store(tmp_path)
    for name in ("flipped", "truncated", "fine", "old"):
        _lm_entry(store, name)
    assert store_cli(["--root", str(tmp_path), "--verify"]) == 0  # untouched
    assert "4 entries" in capsys.readouterr().out
    _flip_byte(tmp_path / "pretrain" / "flipped" / "model.safetensors")
    _truncate(tmp_path / "pretrain" / "truncated" / "model.safetensors")
    (tmp_path / "pretrain" / "truncated" / "metrics.json").write_text("{}")  # added after it was written
    (tmp_path / "pretrain" / "old" / "manifest.json").unlink()
    assert store_cli(["--root", str(tmp_path), "--verify"]) == 2
    out = capsys.readouterr().out.splitlines()
    damaged = [line for line in out if line.startswith("DAMAGED")]
    assert len(damaged) == 3, out
    assert "pretrain/flipped: model.safetensors does not match the sha256" in damaged[0]
    assert "pretrain/truncated: metrics.json is not in its manifest.json" in damaged[1]
    assert "pretrain/truncated: model.safetensors is truncated" in damaged[2]
    assert any(line.startswith("UNVERIFIED pretrain/old") for line in out)
    assert out[-1].startswith(f"4 entries in {tmp_path}: 1 as written, 2 damaged, 1 unverified.")
    assert store_cli(["--root", str(tmp_path), "--verify", "lm_finetune"]) == 0  # no entry of that stage


def test_lineage_records_the_environment(tmp_path):
    """What ran is recorded with every entry (ulmfit.environment): versions, commit, allocator, peak memory."""
    from ulmfit.environment import peak_rss_mb
    env = _write(Store(tmp_path), "pretrain", "a").lineage["environment"]
    assert {"ulmfit", "git_commit", "python", "torch", "fastai", "platform", "processes", "malloc"} <= set(env)
    assert 0 < env["peak_rss_mb"] <= peak_rss_mb()


def test_python_m_ulmfit_store_verify(tmp_path):
    """The command line as a user runs it (test_verify_reports_every_damaged_file_of_a_store has the rest)."""
    store = Store(tmp_path / "store")
    _lm_entry(store, "a")
    _flip_byte(store.root / "pretrain" / "a" / "model.safetensors")
    out = subprocess.run([sys.executable, "-m", "ulmfit.store", "--root", str(store.root), "--verify"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "DAMAGED    pretrain/a: model.safetensors does not match" in out.stdout, out
    # the subprocess also verifies the LMs shipped in the package (this module's fixture hides them in-process)
    shipped = len([d for d in (ulmfit.PACKAGE_DIR / "pretrained").iterdir() if d.is_dir()])
    assert out.stdout.splitlines()[-1].startswith(
        f"{1 + shipped} entries in {store.root}: {shipped} as written, 1 damaged")
