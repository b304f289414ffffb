"""TF-IDF and NB-SVM baselines: same splits and metric format as classify, entries in the store."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from sklearn.feature_extraction.text import CountVectorizer

from ulmfit.baselines import NBSVM
from ulmfit.config import CONF_DIR
from ulmfit.data import classification_split, load_corpus
from ulmfit.stages import get_stage
from tests.conftest import imdb_csv


def _cfg(stage: str, root, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"stage={stage}", f"paths.root={root}", "tokenizer.n_workers=0", *overrides])


@pytest.mark.parametrize("stage", ["tfidf", "nbsvm"])
def test_baseline_stage_on_imdb_slice(stage, tmp_path, mini_imdb):
    entry = get_stage(stage)(_cfg(stage, tmp_path, *imdb_csv(mini_imdb), "data.n_train=100", "run_name=b"))
    m = entry.metrics
    assert m["n_train"] == 100 and m["test_confusion_matrix"]["labels"] == ["neg", "pos"]
    assert 0.5 < m["test_accuracy"] <= 1.0  # 100 reviews already beat chance
    assert entry.lineage["data"]["n_train"] == 100 and {p.name for p in entry.path.iterdir()} == {
        "metrics.json", "config.yaml", "lineage.json"}


def test_baselines_and_classify_share_the_split(tmp_path, mini_imdb):
    cfg = _cfg("tfidf", tmp_path, *imdb_csv(mini_imdb), "data.n_train=50")
    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache)
    a = classification_split(corpus, 0.1, 42, 50)
    b = classification_split(corpus, 0.1, 42, 50)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len(a[0]) == 50 and not set(a[0]) & set(a[1])


def test_nbsvm_separates_a_multiclass_toy_problem():
    texts = [f"w{c} filler{i % 7} other{i % 3}" for i in range(60) for c in [i % 3]]
    y = np.array([i % 3 for i in range(60)])
    X = CountVectorizer(token_pattern=r"\S+").fit_transform(texts)
    clf = NBSVM().fit(X, y)
    assert (clf.predict(X) == y).all()
    np.testing.assert_allclose(clf.predict_proba(X).sum(1), 1.0)
