"""Loading never unpickles: fastai's WT103 weights are imported through restricted loaders, crafted pickle
payloads (in the import files or placed in the store) are refused without running, and the package has no
other unpickling call."""

from __future__ import annotations

import pickle
import shutil
import re
from pathlib import Path

import pytest
import torch
from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config
from fastai.text.models.core import get_language_model
from safetensors.torch import load_file

from tests.conftest import TINY, imdb_csv, run_cli
from ulmfit import PACKAGE_DIR

TINY_ARCH = {"emb_sz": 48, "n_hid": 96, "n_layers": 2}


class Payload:
    """Unpickling this runs ``open(marker, 'w')``: what a malicious pickle does."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def fastai_wt103(tmp_path) -> Path:
    """A folder shaped like fastai's WT103 download (lstm_fwd.pth + itos_wt103.pkl), with a tiny model saved by
    fastai/torch the way fastai saves its own."""
    from omegaconf import OmegaConf
    from ulmfit.config import CONF_DIR
    tiny = OmegaConf.load(CONF_DIR / "model" / "awd_lstm_tiny.yaml")
    assert {k: tiny[k] for k in TINY_ARCH} == TINY_ARCH
    vocab = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"] + \
        [w for w in "the , . of and to a in is was that for it as with film movie great bad".split()]
    config = {**awd_lstm_lm_config, **TINY_ARCH}
    torch.manual_seed(0)
    model = get_language_model(AWD_LSTM, len(vocab), config=config)
    folder = tmp_path / "wt103-fwd"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "lstm_fwd.pth")
    with open(folder / "itos_wt103.pkl", "wb") as fh:
        pickle.dump(vocab, fh)
    return folder


def test_import_fastai_weights_then_fine_tune(fastai_wt103, mini_imdb, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    out = run_cli("stage=import_wt103", f"stage.dir={fastai_wt103}", "run_name=wt103", *TINY, cwd=home)
    assert out.returncode == 0, out.stderr[-2000:]
    entry = home / "store" / "pretrain" / "wt103"
    saved = torch.load(fastai_wt103 / "lstm_fwd.pth", weights_only=True)
    imported = load_file(entry / "model.safetensors")
    for key, tensor in imported.items():  # every stored tensor is the published one
        assert torch.equal(tensor, saved[key]), key
    ft = run_cli("stage=lm_finetune", *imdb_csv(mini_imdb), "stage.parent=wt103", *TINY, cwd=home)
    assert ft.returncode == 0, ft.stderr[-2000:]


@pytest.mark.parametrize("target", ["weights", "vocab"])
def test_crafted_pickle_in_import_files_is_refused_without_running(target, fastai_wt103, tmp_path):
    marker = tmp_path / "payload-ran"
    bad = fastai_wt103 / ("lstm_fwd.pth" if target == "weights" else "itos_wt103.pkl")
    if target == "weights":
        torch.save({"0.encoder.weight": torch.zeros(2, 2), "x": Payload(marker)}, bad)
    else:
        bad.write_bytes(pickle.dumps(["xxunk", Payload(marker)]))
    home = tmp_path / "home"
    home.mkdir()
    out = run_cli("stage=import_wt103", f"stage.dir={fastai_wt103}", "run_name=evil", *TINY, cwd=home)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith("ulmfit: error: Refused") and "Traceback" not in out.stderr, out.stderr
    assert not marker.exists(), "the payload ran"
    assert not (home / "store" / "pretrain" / "evil").exists()


def test_architecture_mismatch_at_import_is_named(fastai_wt103, tmp_path):
    out = run_cli("stage=import_wt103", f"stage.dir={fastai_wt103}", *TINY, "model.n_hid=72", cwd=tmp_path)
    assert out.returncode == 2 and "n_hid 96 in the weights vs 72 expected" in out.stderr, out.stderr


@pytest.fixture(scope="module")
def store_with_pretrain(tmp_path_factory, mini_wikitext) -> Path:
    home = tmp_path_factory.mktemp("payload_home")
    pre = run_cli("stage=pretrain", "data=wikitext2", f"data.root={mini_wikitext}", "run_name=pre", *TINY, cwd=home)
    assert pre.returncode == 0, pre.stderr[-2000:]
    return home


@pytest.mark.parametrize("where, stage", [("model.safetensors", "lm_finetune"), ("model.safetensors", "classify"),
                                          ("vocab.json", "lm_finetune"), ("checkpoint", "lm_finetune")])
def test_crafted_pickle_placed_in_the_store_is_refused_without_running(where, stage, store_with_pretrain, mini_imdb,
                                                                        tmp_path):
    """lm_finetune reads the pretrained LM's weights and vocabulary, classify its encoder (from the same weights
    file), a resumed run its checkpoint."""
    home = tmp_path / "home"
    shutil.copytree(store_with_pretrain, home)
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(Payload(marker))
    if where == "checkpoint":  # an interrupted run's checkpoint whose files were swapped for a payload
        ckpt = home / "store" / "lm_finetune" / ".resume-ft" / "epoch-0001"
        ckpt.mkdir(parents=True)
        for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"):
            (ckpt / name).write_bytes(payload)
        args = ["stage=lm_finetune", "run_name=ft", "resume=true"]
    else:
        (home / "store" / "pretrain" / "pre" / where).write_bytes(payload)
        args = ["stage=classify", "stage.parent_stage=pretrain"] if stage == "classify" else ["stage=lm_finetune"]
    before = sorted(str(p) for p in (home / "store").rglob("*") if p.name != "payload-ran")
    out = run_cli(*args, *imdb_csv(mini_imdb), "stage.parent=pre", *TINY, cwd=home)
    assert out.returncode == 2, out.stderr[-2000:]
    # an entry's manifest refuses the swapped file before it is opened ("damaged"); a checkpoint has no manifest,
    # so its reader refuses the bytes it cannot parse
    assert out.stderr.startswith("ulmfit: error:") and any(
        word in out.stderr for word in ("damaged", "corrupted", "unreadable")), out.stderr
    assert not marker.exists(), "the payload ran"
    assert sorted(str(p) for p in (home / "store").rglob("*")) == before


def test_the_package_has_no_unrestricted_unpickling():
    """Every torch.load is weights_only=True, and pickle is only read through the no-globals Unpickler."""
    offenders = []
    for path in PACKAGE_DIR.rglob("*.py"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            if "torch.load(" in code and "weights_only=True" not in code:
                offenders.append(f"{path.name}:{n}: {line.strip()}")
            if re.search(r"pickle\.loads?\(|pickle\.Unpickler\(|\bjoblib\.load\(|np\.load\(.*allow_pickle=True", code):
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_download_path_uses_fastai_untar_data(fastai_wt103, monkeypatch, make_cfg):
    """stage.download=true (for users with a network) goes through fastai's untar_data with the WT103 URL of the
    run's direction; here it is stubbed and returns the local copy, so nothing is downloaded."""
    from fastai.data import external
    from ulmfit.stages import get_stage
    calls = []
    monkeypatch.setattr(external, "untar_data", lambda url: calls.append(url) or fastai_wt103)
    entry = get_stage("import_wt103")(make_cfg("stage=import_wt103", "stage.download=true", "run_name=dl", *TINY))
    assert calls == [external.URLs.WT103_FWD] and entry.lineage["imported_from"]["weights"].endswith("lstm_fwd.pth")
