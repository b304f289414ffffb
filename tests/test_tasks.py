"""data.task=multilabel and data.task=regression end to end through data=csv (lm_finetune -> classify -> predict ->
evaluate, and the baselines) on tiny CSVs made from the embedded IMDB reviews, and their bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import TINY
from ulmfit.config import CONF_DIR
from ulmfit.errors import UsageError
from ulmfit.stages import get_stage
from ulmfit.tasks import Task


def _run(stage: str, root: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"stage={stage}", f"paths.root={root}", *TINY, *overrides])
    return get_stage(stage)(cfg)


def _csvs(mini_imdb: Path, out: Path, label) -> list[str]:
    """mini_imdb's train/test CSVs with ``label(row)`` as the label column; the data overrides that read them."""
    for part in ("train", "test"):
        df = pd.read_csv(mini_imdb / f"{part}.csv")
        df.assign(label=[label(r) for r in df.itertuples()]).to_csv(out / f"{part}.csv", index=False)
    return ["data=csv", f"data.files.train={out / 'train.csv'}", f"data.files.test={out / 'test.csv'}",
            "data.min_freq=1"]


def _entries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root / "store")) for p in (root / "store").glob("*/*")) \
        if (root / "store").exists() else []


def test_multilabel_end_to_end(tmp_path, mini_imdb):
    # the sentiment, and "long" for the longer reviews: one or two labels per text
    data = _csvs(mini_imdb, tmp_path, lambda r: r.label + (";long" if len(r.text.split()) >= 70 else ""))
    data += ["data.task=multilabel"]
    _run("lm_finetune", tmp_path, *data, "stage.parent=none", "run_name=ft")
    clas = _run("classify", tmp_path, *data, "run_name=ml")
    m = clas.metrics
    assert clas.model_info["task"] == "multilabel" and clas.model_info["classes"] == ["long", "neg", "pos"]
    assert 0 < m["threshold"] < 1 and clas.model_info["threshold"] == m["threshold"]
    assert {"valid_micro_f1", "valid_exact_match", "test_micro_f1", "test_macro_f1", "test_exact_match"} <= set(m)
    assert set(m["test_per_label"]) == {"long", "neg", "pos"} and "valid_accuracy" not in m
    assert [h for h in m["phases"][0]["history"][0]] == ["train_loss", "valid_loss", "f1_score"]

    test = tmp_path / "test.csv"
    preds = _run("predict", tmp_path, f"stage.input={test}", f"stage.output={tmp_path / 'p.csv'}")
    probs = preds[["prob_long", "prob_neg", "prob_pos"]].to_numpy()
    chosen = [";".join(c for c, p in zip(["long", "neg", "pos"], row) if p >= m["threshold"]) for row in probs]
    assert preds["prediction"].fillna("").tolist() == chosen
    report = _run("evaluate", tmp_path, f"stage.input={test}", f"stage.output={tmp_path / 'e.json'}")
    assert report["micro_f1"] == pytest.approx(m["test_micro_f1"]) and report["threshold"] == m["threshold"]
    assert report["exact_match"] == pytest.approx(m["test_exact_match"])

    for baseline in ("tfidf", "nbsvm"):  # one-vs-rest, the threshold chosen on the same validation texts
        b = _run(baseline, tmp_path, *data, f"run_name={baseline}").metrics
        assert b["C"] in [0.1, 0.3, 1, 3, 10, 30] and 0 < b["threshold"] < 1
        assert 0 <= b["test_exact_match"] <= b["test_micro_f1"] <= 1 and set(b["test_per_label"]) == {"long", "neg", "pos"}


def test_regression_end_to_end(tmp_path, mini_imdb):
    # a rating: high for positive reviews, low for negative ones, spread by length
    data = _csvs(mini_imdb, tmp_path, lambda r: f"{(7 if r.label == 'pos' else 1) + len(r.text) % 4}.0")
    data += ["data.task=regression"]
    _run("lm_finetune", tmp_path, *data, "stage.parent=none", "run_name=ft")
    clas = _run("classify", tmp_path, *data, "run_name=reg", "train.monitor=spearmanr")
    m = clas.metrics
    assert clas.model_info["task"] == "regression" and clas.model_info["classes"] == []
    assert clas.model_info["head"]["y_range"] == [1.0, 10.0]  # the training targets' range
    assert {"valid_rmse", "valid_spearman", "test_rmse", "test_mae", "test_spearman"} <= set(m)
    assert m["test_mae"] <= m["test_rmse"] and -1 <= m["test_spearman"] <= 1
    assert m["kept_epoch"]["spearmanr"] == max(h["spearmanr"] for p in m["phases"] for h in p["history"])

    test = tmp_path / "test.csv"
    preds = _run("predict", tmp_path, f"stage.input={test}", f"stage.output={tmp_path / 'p.csv'}")
    assert list(preds.columns) == ["row", "prediction"] and preds["prediction"].between(1, 10).all()
    report = _run("evaluate", tmp_path, f"stage.input={test}", f"stage.output={tmp_path / 'e.json'}")
    assert report["rmse"] == pytest.approx(m["test_rmse"], rel=1e-5)
    assert json.loads((tmp_path / "e.json").read_text())["spearman"] == pytest.approx(m["test_spearman"], rel=1e-5)

    ridge = _run("tfidf", tmp_path, *data, "run_name=ridge").metrics  # TF-IDF + ridge, alpha chosen on validation
    assert ridge["alpha"] in [0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30] and set(ridge["valid_loss_by_alpha"]) == {
        "0.01", "0.03", "0.1", "0.3", "1", "3", "10", "30"} and ridge["test_rmse"] > 0
    before = _entries(tmp_path)
    for stage, fragment in [("nbsvm", "use stage=tfidf"), ("probe", "compare stage=classify with stage=tfidf")]:
        with pytest.raises(UsageError, match=fragment):
            _run(stage, tmp_path, *data)
    assert _entries(tmp_path) == before


@pytest.mark.parametrize("task, label, fragment", [
    ("regression", "abc", "the target of data row 2 is 'abc', not a number"),
    ("regression", "nan", "the target of data row 2 is 'nan', not a number"),
    ("multilabel", " ; ", "data row 2 has no labels"),
])
def test_unreadable_labels_stop_before_any_work(tmp_path, task, label, fragment):
    """In the reader, before tokenizing; and from the token cache, when the corpus was tokenized by a run that
    read its labels as another task's (the LM's: classification, which takes any label)."""
    good = ("3", "2") if task == "regression" else ("x;y", "y")
    rows = [("a good film", good[0]), ("a bad film", label), ("fine", good[1])]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "t.csv", index=False)
    data = ["data=csv", f"data.files.train={tmp_path / 't.csv'}", "data.min_freq=1", f"data.task={task}"]
    with pytest.raises(UsageError, match=fragment):
        _run("tfidf", tmp_path, *data)
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").glob("*/*"))
    _run("export_tokens", tmp_path, *data[:3], f"stage.output={tmp_path / 'c.tokens'}")  # fills the cache
    with pytest.raises(UsageError, match=fragment):
        _run("classify", tmp_path, *data, "stage.parent_stage=none")
    assert _entries(tmp_path) == []


def test_targets_per_task():
    ml = Task("multilabel", "|")
    assert ml.classes(["b|a", "a", " c | "]) == ["a", "b", "c"]
    np.testing.assert_array_equal(ml.targets(["b|a", "c"], ["a", "b", "c"], "x"), [[1, 1, 0], [0, 0, 1]])
    with pytest.raises(UsageError, match=r"X labels \['d'\] never occur in training"):
        ml.targets(["d"], ["a", "b"], "x")
    np.testing.assert_array_equal(Task("regression").targets(["1", " 2.5", "-3e1"], [], "x"), [1, 2.5, -30])
    with pytest.raises(UsageError, match="at least two different targets"):
        Task("regression").classes(["4", "4.0"])
    assert Task().classes(["b", "a", "b"]) == ["a", "b"]
    assert Task("multilabel").decisions(np.array([[0.6, 0.2], [0.1, 0.1]]), ["a", "b"], 0.5) == ["a", ""]
