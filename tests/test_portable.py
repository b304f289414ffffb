"""Portable token files: a corpus exported here reads back identical elsewhere, without spaCy or the raw files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import ulmfit.data.portable as portable
import ulmfit.data.tokens as tokens_mod
from ulmfit.config import CONF_DIR
from ulmfit.data import TokenStream, build_vocab, load_corpus, numericalize
from ulmfit.data.streams import within_budget
from ulmfit.errors import UsageError
from ulmfit.stages.common import data_identity
from tests.conftest import REPO, run_cli


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["tokenizer.n_workers=0", *overrides])


@pytest.fixture(scope="module")
def imdb(mini_imdb, tmp_path_factory):
    """The mini IMDB corpus tokenized into a cache, and its data config."""
    home = tmp_path_factory.mktemp("portable_home")
    cfg = _cfg("data=imdb", f"data.root={mini_imdb}", f"paths.root={home}")
    return cfg, load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache)


def _assert_same_corpus(a, b) -> None:
    assert a.tokens == b.tokens and list(a.parts) == list(b.parts)
    for name in a.parts:
        np.testing.assert_array_equal(np.asarray(a.part(name).ids), np.asarray(b.part(name).ids))
        np.testing.assert_array_equal(a.part(name).offsets, b.part(name).offsets)
        assert a.part(name).labels == b.part(name).labels


def test_signature_keeps_spacys_version_string():
    """The version comes from spaCy's metadata now, not an import: the same string, so caches keep their keys."""
    import spacy
    assert tokens_mod.TokenizerSettings().signature()["spacy"] == spacy.__version__


def test_round_trip_is_the_cache(imdb, tmp_path):
    cfg, corpus = imdb
    path = tmp_path / "imdb.tokens"
    header = portable.export_corpus(corpus, path)
    assert header["fingerprint"] == corpus.fingerprint and all(p["overflow"] == 0 for p in header["parts"].values())
    with zipfile.ZipFile(path) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_LZMA}
    other = _cfg("data=imdb", f"data.tokens={path}", f"paths.root={tmp_path / 'gpu'}")  # no data.root: not needed
    back = load_corpus(other.data, other.tokenizer, other.paths.cache)
    assert not back.cache_hit and back.fingerprint == corpus.fingerprint
    assert back.path == Path(other.paths.cache) / corpus.fingerprint
    _assert_same_corpus(corpus, back)
    vocab = build_vocab(corpus, ["train", "unsup"], 60000, 2)
    assert build_vocab(back, ["train", "unsup"], 60000, 2) == vocab
    np.testing.assert_array_equal(numericalize(back, "test", vocab).ids, numericalize(corpus, "test", vocab).ids)
    again = load_corpus(other.data, other.tokenizer, other.paths.cache)
    assert again.cache_hit and isinstance(again.part("train").ids, np.memmap)
    # lineage: a run on the file and a run on the raw files see the same corpus
    assert data_identity(other.data, other.tokenizer)["fingerprint"] == \
        data_identity(cfg.data, cfg.tokenizer)["fingerprint"]


def test_ids_past_the_uint16_range_are_escaped_not_lost(imdb, tmp_path, monkeypatch):
    """A token list longer than the escape value (forced small here) keeps every id: none becomes xxunk."""
    _, corpus = imdb
    monkeypatch.setattr(portable, "ESCAPE", 50)
    path = tmp_path / "small.tokens"
    header = portable.export_corpus(corpus, path)
    assert header["ids"]["escape"] == 50 and header["parts"]["train"]["overflow"] > 0
    with zipfile.ZipFile(path) as zf:
        stored = portable._read_array(zf, "train.ids.npy")
    assert stored.dtype == np.uint16 and stored.max() == 50
    monkeypatch.undo()  # the reader follows the file's own escape value
    _assert_same_corpus(corpus, portable.open_portable(path, tmp_path / "cache"))


def test_token_budget_ships_the_documents_pretrain_would_pick(imdb, tmp_path):
    cfg, corpus = imdb
    budget, seed = 3000, 7
    header = portable.export_corpus(corpus, tmp_path / "sub.tokens", parts=["train", "test"], max_tokens=budget,
                                    seed=seed)
    sub = portable.open_portable(tmp_path / "sub.tokens", tmp_path / "cache")
    assert sub.fingerprint == header["fingerprint"] != corpus.fingerprint and list(sub.parts) == ["train", "test"]
    assert header["subset"]["of"] == corpus.fingerprint
    assert portable.subset_fingerprint(corpus.fingerprint, "train", budget, seed) == sub.fingerprint
    vocab = build_vocab(corpus, ["train"], 60000, 1)
    picked = within_budget(TokenStream.from_parts(corpus, ["train"], vocab), budget, seed)  # what pretrain trains on
    assert 0 < len(picked) < len(corpus.part("train")) and picked.n_tokens >= budget
    ours = TokenStream.from_parts(sub, ["train"], vocab)
    assert [picked.doc(i).tolist() for i in range(len(picked))] == [ours.doc(i).tolist() for i in range(len(ours))]
    assert sub.decode(sub.part("test").ids) == corpus.decode(corpus.part("test").ids)  # other parts whole
    with pytest.raises(UsageError, match="train part"):
        portable.export_corpus(corpus, tmp_path / "x.tokens", parts=["test"], max_tokens=budget)


def _rewrite(src: Path, dst: Path, drop: str = "", header: dict | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_LZMA) as zout:
        for info in zin.infolist():
            if info.filename == drop:
                continue
            data = json.dumps(header).encode() if header and info.filename == portable.HEADER else zin.read(info)
            zout.writestr(info.filename, data)
    return dst


def test_bad_files_say_what_is_wrong_and_how_to_fix_it(imdb, tmp_path):
    cfg, corpus = imdb
    good = tmp_path / "good.tokens"
    header = portable.export_corpus(corpus, good)
    (tmp_path / "text.tokens").write_text("not a zip")
    cases = {
        tmp_path / "missing.tokens": "no such file",
        tmp_path / "text.tokens": "not a zip archive",
        _rewrite(good, tmp_path / "nohead.tokens", drop=portable.HEADER): "without portable.json",
        _rewrite(good, tmp_path / "newer.tokens", header={**header, "version": portable.VERSION + 1}): "format version",
        _rewrite(good, tmp_path / "other.tokens", header={**header, "format": "npz"}): "does not describe",
        _rewrite(good, tmp_path / "cut.tokens", drop="unsup.ids.npy"): "unsup.ids.npy are missing",
    }
    for path, fragment in cases.items():
        with pytest.raises(UsageError, match=fragment) as e:
            portable.open_portable(path, tmp_path / "cache")
        assert str(e.value).startswith(f"data.tokens={path}") and "export" in str(e.value), str(e.value)
    with pytest.raises(UsageError, match="holds a imdb corpus, but data.format is wikitext"):
        load_corpus(_cfg("data=wikitext2", f"data.tokens={good}").data, cfg.tokenizer, tmp_path / "cache")
    two = tmp_path / "two.tokens"
    portable.export_corpus(corpus, two, parts=["train", "test"])
    with pytest.raises(UsageError, match=r"lacks the parts \['unsup'\].*data.parts=\['train', 'test'\]"):
        load_corpus(_cfg("data=imdb", f"data.tokens={two}").data, cfg.tokenizer, tmp_path / "cache")
    assert len(load_corpus(_cfg("data=imdb", f"data.tokens={two}", "data.parts=[train,test]").data, cfg.tokenizer,
                           tmp_path / "cache").parts) == 2


def test_a_cache_miss_without_spacy_names_the_portable_route(csv_reader_files, tmp_path, monkeypatch):
    from ulmfit.data.readers import CsvReader
    monkeypatch.setattr(tokens_mod, "spacy_version", lambda: tokens_mod.SPACY_MISSING)
    with pytest.raises(UsageError, match="needs spaCy, which is not installed.*data.tokens=<file>"):
        tokens_mod.load_or_tokenize(CsvReader(csv_reader_files), tokens_mod.TokenizerSettings(n_workers=0), tmp_path)


@pytest.fixture
def csv_reader_files(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\nthe cat,pos\n")
    return {"train": tmp_path / "train.csv"}


NO_SPACY = """
import sys
from ulmfit.config import compose
from ulmfit.data import load_corpus
cfg = compose(*sys.argv[1:])
corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache)
assert sys.modules.get("spacy") is None, "spaCy was imported"  # None: absent, or blocked
print(corpus.fingerprint, corpus.cache_hit, len(corpus.tokens))
"""


def test_loading_never_imports_spacy(mini_imdb, tmp_path):
    """The CLI exports; then, in fresh interpreters, a cache hit and a portable file load without spaCy (on the
    portable route it cannot even be imported, as on a GPU node that lacks it)."""
    out = run_cli("stage=export_tokens", "data=imdb", f"data.root={mini_imdb}", "tokenizer.n_workers=0",
                  "stage.output=mini.tokens", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    fingerprint = json.loads(zipfile.ZipFile(tmp_path / "mini.tokens").read(portable.HEADER))["fingerprint"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    hit = subprocess.run([sys.executable, "-c", NO_SPACY, "data=imdb", f"data.root={mini_imdb}",
                          f"paths.root={tmp_path}"], env=env, capture_output=True, text=True, timeout=120)
    assert hit.returncode == 0, hit.stderr
    assert hit.stdout.split()[:2] == [fingerprint, "True"]
    blocked = "import sys; sys.modules['spacy'] = None\n" + NO_SPACY
    for expect_hit in ("False", "True"):
        run = subprocess.run([sys.executable, "-c", blocked, "data=imdb", f"data.tokens={tmp_path / 'mini.tokens'}",
                              f"paths.root={tmp_path / 'node'}"], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == [fingerprint, expect_hit, hit.stdout.split()[2]]
