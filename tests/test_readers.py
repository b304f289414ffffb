"""Each reader returns {part: DataFrame[text, label]}; bad inputs give one clear UsageError."""

from __future__ import annotations

import lzma
import shutil

import pandas as pd
import pytest

from ulmfit import SAMPLE_DIR, UsageError
from ulmfit.data.readers import CsvReader, ImdbReader, TrecReader, WikiTextReader, make_reader


def _check(parts, expected_parts):
    assert set(parts) == set(expected_parts)
    for df in parts.values():
        assert list(df.columns) == ["text", "label"] and len(df) > 0
        assert df["text"].map(type).eq(str).all() and df["label"].map(type).eq(str).all()


# ---- WikiText ---------------------------------------------------------------------------------
def test_wikitext_xz_sample_splits_articles():
    parts = WikiTextReader(SAMPLE_DIR / "wikitext-2").read()
    _check(parts, ["train", "valid", "test"])
    first = parts["train"]["text"][0]
    assert first.startswith("= Valkyria Chronicles III =")
    assert "<unk>" not in first and "xxunk" in first  # OOV marker mapped to fastai's UNK
    assert all(t.startswith("= ") for t in parts["train"]["text"])  # one document per article


def test_wikitext_plain_files_equal_xz(mini_wikitext, tmp_path):
    for f in mini_wikitext.iterdir():
        with lzma.open(tmp_path / (f.name + ".xz"), "wt", encoding="utf-8") as fh:
            fh.write(f.read_text(encoding="utf-8"))
    a, b = WikiTextReader(mini_wikitext).read(), WikiTextReader(tmp_path).read()
    assert a["train"]["text"].tolist() == b["train"]["text"].tolist()


def test_wikitext_fastai_csv_form(tmp_path):
    pd.DataFrame(["= A =\nfirst <unk> article", "= B =\nsecond"]).to_csv(tmp_path / "train.csv", header=False, index=False)
    pd.DataFrame(["= C =\nthird"]).to_csv(tmp_path / "test.csv", header=False, index=False)
    parts = WikiTextReader(tmp_path).read()
    _check(parts, ["train", "test"])
    assert parts["train"]["text"][0] == "= A =\nfirst xxunk article"


def test_wikitext_wrong_folder(tmp_path):
    with pytest.raises(UsageError, match="neither wiki"):
        WikiTextReader(tmp_path).read()


# ---- IMDB --------------------------------------------------------------------------------------
def test_imdb_csv_sample():
    parts = ImdbReader(SAMPLE_DIR / "imdb").read()
    _check(parts, ["train", "test", "unsup"])
    assert parts["train"]["label"].value_counts().to_dict() == {"pos": 500, "neg": 500}
    assert set(parts["unsup"]["label"]) == {""}


def _write_acl_tree(root):
    reviews = {("train", "pos"): ["great <br />film", "loved it"], ("train", "neg"): ["awful"],
               ("test", "pos"): ["fine"], ("test", "neg"): ["bad", "worse"], ("train", "unsup"): ["hmm"]}
    for (part, label), texts in reviews.items():
        (root / "aclImdb" / part / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            # numeric ids out of lexical order: 10 must come after 2
            (root / "aclImdb" / part / label / f"{[2, 10][i]}_{7 if label == 'pos' else 1}.txt").write_text(text)


def test_imdb_acl_tree(tmp_path):
    _write_acl_tree(tmp_path)
    for root in (tmp_path, tmp_path / "aclImdb"):  # the parent or the tree itself
        parts = ImdbReader(root).read()
        _check(parts, ["train", "test", "unsup"])
        assert parts["train"]["text"].tolist() == ["great <br />film", "loved it", "awful"]
        assert parts["train"]["label"].tolist() == ["pos", "pos", "neg"]
        assert parts["unsup"]["label"].tolist() == [""]


def test_imdb_missing_csv(tmp_path):
    with pytest.raises(UsageError, match="train.csv"):
        ImdbReader(tmp_path).read()


# ---- generic CSV ----------------------------------------------------------------------------------
def test_csv_tsv_gzip_custom_columns(tmp_path):
    df = pd.DataFrame({"review": ["good", "bad", "so so"], "stars": ["5", "1", "3"], "id": [1, 2, 3]})
    df.to_csv(tmp_path / "train.tsv.gz", sep="\t", index=False, compression="gzip")
    pd.DataFrame({"review": ["no label here"]}).to_csv(tmp_path / "more.csv", index=False)
    parts = CsvReader({"train": tmp_path / "train.tsv.gz", "unsup": tmp_path / "more.csv"},
                      text_cols=("review",), label_col="stars").read()
    _check(parts, ["train", "unsup"])
    assert parts["train"]["label"].tolist() == ["5", "1", "3"]
    assert parts["unsup"]["label"].tolist() == [""]


def test_csv_headerless_by_position(tmp_path):
    (tmp_path / "t.csv").write_text('"1","title","desc"\n"2","t2","d2"\n')
    parts = CsvReader({"train": tmp_path / "t.csv"}, text_cols=(2,), label_col=0, header=False).read()
    assert parts["train"]["text"].tolist() == ["desc", "d2"] and parts["train"]["label"].tolist() == ["1", "2"]
    two = CsvReader({"train": tmp_path / "t.csv"}, text_cols=(1, 2), label_col=0, header=False).read()
    assert two["train"]["text"].tolist() == ["xxfld 1 title xxfld 2 desc", "xxfld 1 t2 xxfld 2 d2"]


@pytest.mark.parametrize("content,match", [
    ("", "is empty"),
    ("txt,label\nhello,pos\n", "no column 'text'"),
    ("text,label\nhello,pos\nworld,\n", "without a label"),
    ("text,label\n ,pos\n", "has no text"),
])
def test_csv_errors(tmp_path, content, match):
    (tmp_path / "train.csv").write_text(content)
    with pytest.raises(UsageError, match=match):
        CsvReader({"train": tmp_path / "train.csv"}).read()


def test_csv_missing_file_and_bad_encoding(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        CsvReader({"train": tmp_path / "nope.csv"}).read()
    (tmp_path / "bad.csv").write_bytes(b"text,label\nsister\xf0city,LOC\n")
    with pytest.raises(UsageError, match="data.encoding"):
        CsvReader({"train": tmp_path / "bad.csv"}).read()
    assert CsvReader({"train": tmp_path / "bad.csv"}, encoding="latin-1").read()["train"]["label"][0] == "LOC"


# ---- TREC ------------------------------------------------------------------------------------------
def test_trec_latin1_and_labels(tmp_path):
    # Line 66 of TREC's train_5500.label has the byte 0xf0 ("sister\xf0city"): not UTF-8, read as Latin-1.
    (tmp_path / "train_5500.label").write_bytes(b"LOC:city What is the sister\xf0city of Lyon ?\n"
                                                b"HUM:ind Who wrote Hamlet ?\n")
    (tmp_path / "TREC_10.label").write_bytes(b"NUM:date When was it ?\n")
    parts = TrecReader(tmp_path).read()
    _check(parts, ["train", "test"])
    assert parts["train"]["label"].tolist() == ["LOC", "HUM"]
    assert parts["train"]["text"][0] == "What is the sister\u00f0city of Lyon ?"
    assert TrecReader(tmp_path, label="fine").read()["train"]["label"][0] == "LOC:city"


def test_trec_malformed_line(tmp_path):
    (tmp_path / "train_5500.label").write_text("this line has no label\n")
    (tmp_path / "TREC_10.label").write_text("NUM:date When ?\n")
    with pytest.raises(UsageError, match="line 1"):
        TrecReader(tmp_path).read()


# ---- config -> reader ----------------------------------------------------------------------------
def _data_cfg(option: str, **values) -> dict:
    """A data config as the CLI composes it (``data=<option>``), with ``values`` changed."""
    from omegaconf import OmegaConf
    from ulmfit.config import compose
    return {**OmegaConf.to_container(compose(f"data={option}").data, resolve=True), **values}


def test_make_reader_from_config_and_errors(tmp_path):
    assert isinstance(make_reader(_data_cfg("wikitext2_sample")), WikiTextReader)
    with pytest.raises(UsageError, match="Unknown data.format"):
        make_reader({"format": "parquet"})
    with pytest.raises(UsageError, match="does not exist"):
        make_reader(_data_cfg("imdb", root=str(tmp_path / "missing")))
    with pytest.raises(UsageError, match="No data folder"):
        make_reader(_data_cfg("imdb"))


def test_download_path_uses_fastai_untar_data(monkeypatch, tmp_path):
    """The real download path stays (for users with a network); here untar_data is stubbed, never called for real."""
    import fastai.data.external as external
    shutil.copytree(SAMPLE_DIR / "imdb", tmp_path / "imdb")
    calls = []
    monkeypatch.setattr(external, "untar_data", lambda url: calls.append(url) or tmp_path / "imdb")
    reader = make_reader(_data_cfg("imdb", download=True))
    assert calls == [external.URLs.IMDB] and reader.root == tmp_path / "imdb"
