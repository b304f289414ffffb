"""The LM that ships inside the package: exported from a pretrain entry in fp16, seen by every store as a
read-only pretrain entry, the default parent of lm_finetune in a store without one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

import ulmfit
from tests.conftest import TINY, imdb_csv
from ulmfit import shipped
from ulmfit.config import CONF_DIR
from ulmfit.stages import get_stage
from ulmfit.store import Store
from ulmfit.store.manifest import write_manifest


def _run(stage: str, root: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"stage={stage}", f"paths.root={root}", *TINY, *overrides])
    return get_stage(stage)(cfg)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mini_wikitext) -> tuple[Path, object]:
    """A tiny pretrain entry and its shipped (fp16) export in a folder of its own."""
    root = tmp_path_factory.mktemp("ship")
    entry = _run("pretrain", root / "trainer", "data=wikitext2", f"data.root={mini_wikitext}", "run_name=lm")
    out = shipped.export(entry.path, "general-lm", root / "pretrained")
    return out, entry


def test_export_writes_an_fp16_entry_with_provenance(exported):
    out, entry = exported
    weights = load_file(out / "model.safetensors")
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float16}
    original = entry.state_dict()
    assert weights.keys() == original.keys()
    for k in weights:  # the values are the trained ones, rounded to fp16
        torch.testing.assert_close(weights[k].float(), original[k].half().float())
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["shipped"]["from"] == "pretrain/lm" and lineage["data"]["fingerprint"] == entry.lineage["data"]["fingerprint"]
    assert lineage["shipped"]["weights_bytes"] == (out / "model.safetensors").stat().st_size
    assert json.loads((out / "metrics.json").read_text()) == entry.metrics
    assert not (out / "encoder.safetensors").exists()
    manifest = json.loads((out / "manifest.json").read_text())["files"]  # checked like any entry's
    assert manifest["model.safetensors"]["sha256"] == lineage["shipped"]["weights_sha256"]
    assert Store(out.parents[1], shipped=out.parent).get("pretrain", "general-lm").problems() == []


def test_export_names_the_corpus_by_name_and_sha256_not_by_its_path(exported, mini_wikitext, tmp_path):
    """The shipped lineage says which corpus by its folder's name and its files' sha256 (what sha256sum prints), and
    nowhere where it lay; exporting the shipped entry again rewrites its lineage and keeps the weights byte for
    byte; a corpus that changed since training is refused."""
    from ulmfit.files import sha256_file
    from ulmfit.errors import UsageError
    out, entry = exported
    lineage = json.loads((out / "lineage.json").read_text())
    files = {f.name: sha256_file(f) for f in sorted(mini_wikitext.iterdir())}
    assert lineage["data"]["corpus"] == {"name": mini_wikitext.name, "files": files}
    assert lineage["data"]["source"] == f"wikitext ({mini_wikitext.name})"
    assert str(mini_wikitext) not in (out / "lineage.json").read_text()
    again = shipped.export(out, "general-lm", tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    assert json.loads((again / "lineage.json").read_text()) == lineage  # from: still the trained entry
    changed = tmp_path / "changed"
    shutil.copytree(mini_wikitext, changed)
    with (changed / "wiki.test.tokens").open("a") as fh:
        fh.write(" = Another article = \n")
    config = entry.path / "config.yaml"
    moved = tmp_path / "moved"
    shutil.copytree(entry.path, moved)
    (moved / "config.yaml").write_text(config.read_text().replace(str(mini_wikitext), str(changed)))
    write_manifest(moved)
    with pytest.raises(UsageError, match="is not the one pretrain/moved was trained on"):
        shipped.export(moved, "x", tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_a_store_without_pretrain_entries_fine_tunes_from_the_shipped_lm(exported, tmp_path, mini_imdb, monkeypatch):
    out, entry = exported
    monkeypatch.setattr(ulmfit, "SHIPPED_DIR", out.parent)
    store = Store(tmp_path / "store")
    assert [e.ref for e in store.entries("pretrain")] == ["pretrain/general-lm"]
    assert store.latest("pretrain").path == out and store.get("pretrain", "general-lm").path == out
    assert all(t.dtype == torch.float32 for t in store.get("pretrain", "general-lm").state_dict().values()
               if t.is_floating_point())
    ft = _run("lm_finetune", tmp_path, *imdb_csv(mini_imdb), "run_name=ft")
    assert ft.lineage["parent"]["name"] == "general-lm"
    # its perplexity before fine-tuning is the shipped LM's, not a random init's (vocab ~ e^7)
    assert ft.metrics["valid_perplexity_before"] < 0.5 * len(ft.vocab)
    # a locally trained pretrain entry is newer, so it becomes the default; the shipped one stays by name
    local = _run("pretrain", tmp_path, *imdb_csv(mini_imdb), "run_name=local")
    assert store.latest("pretrain").name == "local" and store.get("pretrain", "general-lm").path == out
    assert local.path.parent == tmp_path / "store" / "pretrain"


def test_perplexity_stage_scores_an_lm_entry_on_any_corpus(exported, mini_wikitext, tmp_path):
    """stage=perplexity on the corpus an entry was pretrained on reproduces the test perplexity the pretrain
    stage measured; the report counts the tokens the vocabulary lacks."""
    _, entry = exported
    root = entry.path.parents[2]  # the store's home
    out = tmp_path / "ppl.json"
    report = _run("perplexity", root, f"stage.model=pretrain/{entry.name}", "data=wikitext2",
                  f"data.root={mini_wikitext}", f"stage.output={out}")
    assert json.loads(out.read_text()) == report
    assert report["test"]["perplexity"] == pytest.approx(entry.metrics["test_perplexity"], rel=1e-4)
    assert 0 < report["test"]["oov_rate"] < 0.5 and report["test"]["tokens"] > 1000
    with pytest.raises(Exception, match="pretrain/<name> or lm_finetune/<name>"):
        _run("perplexity", root, f"stage.model={entry.name}")


def test_the_shipped_lm_fine_tunes_and_classifies_your_csv_in_an_empty_store(tmp_path, mini_imdb):
    """What a new user runs: stage=lm_finetune then stage=classify on a CSV, with no pretrain entry anywhere: the
    package's own LM (ulmfit/pretrained/general-lm) is the parent, and its files are consistent."""
    shipped_entry = shipped.shipped_dir() / "general-lm"
    assert (shipped_entry / "lineage.json").is_file(), "the package ships its general-domain LM"
    assert (shipped_entry / "model.safetensors").stat().st_size < 25 * 2**20
    lineage = json.loads((shipped_entry / "lineage.json").read_text())
    assert lineage["shipped"]["dtype"] == "float16" and lineage["data"]["fingerprint"]
    small = ["train.epochs=1", "train.bs=8", "train.bptt=20", "data.n_test=20"]
    ft = _run("lm_finetune", tmp_path, *imdb_csv(mini_imdb), "run_name=ft", *small)
    assert ft.lineage["parent"]["name"] == "general-lm"
    assert ft.metrics["valid_perplexity_before"] < 2000  # a general English LM, not a random init (~30,000)
    clas = _run("classify", tmp_path, *imdb_csv(mini_imdb), "run_name=clas", "train.gradual_unfreezing=false", *small)
    assert clas.lineage["parent"]["name"] == "ft" and 0 <= clas.metrics["test_accuracy"] <= 1
