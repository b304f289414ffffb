"""Several text columns (``data.text_cols``) and SentencePiece subwords (``data.tokenizer=sentencepiece``) through the
real configs, on tiny data: pretrain -> lm_finetune -> classify -> predict, and the errors each option has."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fastai.text.core import tokenize_df
from hydra import compose, initialize_config_dir

from tests.conftest import TINY, run_cli
from ulmfit.config import CONF_DIR
from ulmfit.data import load_corpus
from ulmfit.data.subword import SP_MODEL
from ulmfit.errors import UsageError
from ulmfit.stages import get_stage
from ulmfit.store import Store

SP = ["data.tokenizer=sentencepiece", "data.sp_vocab_size=200"]


def _cfg(stage: str, root: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"stage={stage}", f"paths.root={root}", *TINY, *overrides])


def _run(stage: str, root: Path, *overrides: str):
    return get_stage(stage)(_cfg(stage, root, *overrides))


@pytest.fixture(scope="module")
def fields(mini_imdb, tmp_path_factory) -> Path:
    """The tiny IMDB reviews as a title (first 4 words) and a body (the next 30): train 160, test 60."""
    root = tmp_path_factory.mktemp("fields")
    for part in ("train", "test"):
        words = pd.read_csv(mini_imdb / f"{part}.csv").assign(words=lambda d: d.text.str.split())
        pd.DataFrame({"title": words.words.str[:4].str.join(" "), "body": words.words.str[4:34].str.join(" "),
                      "label": words.label}).to_csv(root / f"{part}.csv", index=False)
    return root


def _fields(root: Path) -> list[str]:
    return ["data=csv", f"data.files.train={root / 'train.csv'}", f"data.files.test={root / 'test.csv'}",
            "data.text_cols=[title,body]", "data.min_freq=1"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory, mini_wikitext, fields):
    """SentencePiece pretrain on tiny WikiText -> LM fine-tuned on the two-field CSV -> classifier."""
    root = tmp_path_factory.mktemp("subword")
    pre = _run("pretrain", root, "data=wikitext2", f"data.root={mini_wikitext}", *SP, "run_name=pre")
    ft = _run("lm_finetune", root, *_fields(fields), *SP, "stage.parent=pre", "run_name=ft")
    clas = _run("classify", root, *_fields(fields), *SP, "stage.parent=ft", "run_name=clas",
                "train.gradual_unfreezing=false")
    return root, pre, ft, clas


def test_fields_are_joined_as_fastai_joins_them(fields, tmp_path):
    """data.text_cols=[title,body] reads what fastai's tokenize_df makes of the two columns (xxfld 1 ... xxfld 2 ...),
    and the baselines see those tokens."""
    cfg = _cfg("tfidf", tmp_path, *_fields(fields))
    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache)
    df = pd.read_csv(fields / "train.csv", dtype=str, keep_default_na=False)
    theirs, _ = tokenize_df(df, text_cols=["title", "body"], n_workers=1)
    assert corpus.decode(corpus.part("train").doc(0)) == list(theirs["text"][0])
    assert list(theirs["text"][0][:3]) == ["xxbos", "xxfld", "1"]
    entry = _run("tfidf", tmp_path, *_fields(fields))
    assert 0 < entry.metrics["test_accuracy"] <= 1


def test_sentencepiece_model_is_trained_once_and_kept_by_every_entry(chain):
    root, pre, ft, clas = chain
    shas = {json.loads((e.path / "manifest.json").read_text())["files"][SP_MODEL]["sha256"] for e in (pre, ft, clas)}
    assert len(shas) == 1  # pretrain's model, copied into each child and listed in its manifest
    assert [e.lineage["data"]["tokenizer"]["kind"] for e in (pre, ft, clas)] == ["sentencepiece"] * 3
    assert pre.lineage["data"]["tokenizer"]["sp_model_sha256"] == shas.pop()
    assert "▁the" in pre.vocab and "▁xxfld" in ft.vocab  # pieces; the LM's texts carry the field markers
    # the token cache keys the corpus by the model; the lineage's fingerprint names the texts, as for spaCy words
    caches = [p.name for p in (root / ".cache" / "tokens").iterdir() if "-sp-" in p.name]
    assert len(caches) == 2 and pre.lineage["data"]["fingerprint"] not in caches


def test_predict_reads_the_classifiers_columns_and_pieces(chain, fields, tmp_path):
    root, _, _, clas = chain
    out = _run("predict", root, f"stage.input={fields / 'test.csv'}", f"stage.output={tmp_path / 'p.csv'}",
               "stage.models=[clas]")
    labels = pd.read_csv(fields / "test.csv")["label"]
    # the same joined text, cut by the same model, as classify scored: the same test accuracy
    assert (out["prediction"] == labels).mean() == pytest.approx(clas.metrics["test_accuracy"])


def test_a_parent_built_with_the_other_tokenizer_stops_the_run(chain, fields):
    root, *_ = chain
    before = sorted(p.relative_to(root) for p in (root / "store").rglob("*"))
    with pytest.raises(UsageError, match="pretrain/pre is built on SentencePiece subwords but this run has "
                                         "data.tokenizer=spacy"):
        _run("lm_finetune", root, *_fields(fields), "stage.parent=pre")
    out = run_cli("stage=lm_finetune", *_fields(fields), *SP, "stage.parent=general-lm", *TINY, cwd=root)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "ulmfit: error: pretrain/general-lm is built on spaCy words but this run has data.tokenizer=sentencepiece: set "
        "data.tokenizer=spacy, or pick a parent built with sentencepiece (stage.parent=<name>; stage=pretrain "
        "data.tokenizer=sentencepiece makes one)."]
    assert sorted(p.relative_to(root) for p in (root / "store").rglob("*")) == before


def test_a_text_column_the_file_lacks_stops_the_run(fields, tmp_path):
    with pytest.raises(UsageError) as e:  # the CLI prints it as one line, exit code 2 (see the test above)
        _run("lm_finetune", tmp_path, *_fields(fields), "data.text_cols=[title,summary]")
    assert str(e.value) == (f"{fields / 'train.csv'} has no column 'summary' (columns: ['title', 'body', 'label']). "
                            f"Set data.text_cols / data.label_col to the right names.")
    assert not (tmp_path / "store").exists() or not Store(tmp_path / "store").entries("lm_finetune")


def test_the_subword_study_composes_the_same_budget_for_each_tokenizer():
    """experiments.subword's steps (TREC-6 and IMDB at 1,000 labels) compose and validate, and differ between the
    tokenizers only in data.tokenizer (and the entries they name): the same data, model, budget and training."""
    import argparse
    from omegaconf import OmegaConf
    from experiments.subword import TOKENIZERS, imdb_steps, steps
    from ulmfit.config import compose as compose_config
    from ulmfit.schema import validate
    args = argparse.Namespace(seed=42, precision="auto", sp_vocab=None, wikitext=Path("/w"), trec=Path("/t"),
                              imdb=Path("/i"), lm_tokens=1000, imdb_lm_tokens=2000, epochs=1, lr=3e-3)
    composed = {}
    for tokenizer in TOKENIZERS:
        for step in [*steps("s", tokenizer, args), *imdb_steps("s", tokenizer, args)]:
            cfg = compose_config(*step.args())
            validate(cfg)
            composed[tokenizer, step.name.replace(f"-{tokenizer}-", "-")] = OmegaConf.to_container(cfg, resolve=False)
    names = ("s-wt2", "s-trec-ft", "s-trec-clas", "s-imdb-ft", "s-imdb1k-clas")
    assert {name for _, name in composed} == set(names)
    for name in names:
        words, pieces = composed["spacy", name], composed["sentencepiece", name]
        assert (words["data"].pop("tokenizer"), pieces["data"].pop("tokenizer")) == TOKENIZERS
        assert [words[k] for k in ("data", "model", "train")] == [pieces[k] for k in ("data", "model", "train")]
    assert composed["spacy", "s-wt2"]["stage"]["lm_tokens"] == 1000
    assert composed["spacy", "s-imdb-ft"]["stage"]["lm_tokens"] == 2000
    assert composed["spacy", "s-imdb-ft"]["stage"]["parent"] == "s-spacy-wt2"
    assert composed["spacy", "s-imdb1k-clas"]["data"]["n_train"] == 1000


def _pretrained(store: Store, name: str, kind: str, backwards: bool = False) -> None:
    """A pretrain entry as find_parent sees one: its lineage's tokenizer and its model's direction (no weights)."""
    lineage = {"parent": None, "data": {"fingerprint": "f", "tokenizer": {"kind": kind}}}
    with store.create("pretrain", name, lineage) as w:
        w.save_json("model.json", {"backwards": backwards})


def test_the_default_parent_is_the_newest_built_with_the_runs_tokenizer(tmp_path):
    """stage.parent unset (or latest): the newest pretrain entry of the run's direction and data.tokenizer, though
    one built with the other tokenizer is newer; no tokenizer given: the newest of the direction, as before."""
    from ulmfit.stages.common import find_parent
    store = Store(tmp_path / "store", shipped=tmp_path / "no-shipped-lm")
    for name, kind, backwards in [("sp-1", "sentencepiece", False), ("sp-2", "sentencepiece", False),
                                  ("sp-2-bwd", "sentencepiece", True), ("words-1", "spacy", False),
                                  ("words-1-bwd", "spacy", True), ("words-2", "spacy", False)]:
        _pretrained(store, name, kind, backwards)
    for name in (None, "latest"):
        assert find_parent(store, "pretrain", name, tokenizer="sentencepiece").name == "sp-2"
        assert find_parent(store, "pretrain", name, backwards=True, tokenizer="sentencepiece").name == "sp-2-bwd"
        assert find_parent(store, "pretrain", name, tokenizer="spacy").name == "words-2"
        assert find_parent(store, "pretrain", name, backwards=True, tokenizer="spacy").name == "words-1-bwd"
        assert find_parent(store, "pretrain", name).name == "words-2"
    assert find_parent(store, "pretrain", "sp-1", tokenizer="spacy").name == "sp-1"  # named: subword_model refuses it


@pytest.mark.parametrize("kind, other", [("sentencepiece", "spacy"), ("spacy", "sentencepiece")])
def test_no_parent_built_with_the_runs_tokenizer_is_one_line_naming_it(tmp_path, kind, other):
    from ulmfit.data.subword import BUILT_ON
    from ulmfit.stages.common import find_parent
    store = Store(tmp_path / "store", shipped=tmp_path / "no-shipped-lm")
    _pretrained(store, "pre", other)
    with pytest.raises(UsageError) as e:
        find_parent(store, "pretrain", None, tokenizer=kind)
    assert str(e.value) == (f"No pretrain entry in {store.root} is built with {BUILT_ON[kind]}, which this run reads "
                            f"(data.tokenizer={kind}): pretrain one with stage=pretrain data.tokenizer={kind}, or "
                            f"name a parent with stage.parent=<name>.")
