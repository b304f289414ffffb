"""TF-IDF and NB-SVM baselines: same splits and metric format as classify, entries in the store."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from sklearn.feature_extraction.text import CountVectorizer

from ulmfit.stages.baselines import NBSVM
from ulmfit.config import CONF_DIR
from ulmfit.data import classification_split, load_corpus, subsample_test
from ulmfit.stages import get_stage
from tests.conftest import imdb_csv


def _cfg(stage: str, root, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"stage={stage}", f"paths.root={root}", "tokenizer.n_workers=0", *overrides])


@pytest.mark.parametrize("stage", ["tfidf", "nbsvm"])
def test_baseline_stage_on_imdb_slice(stage, tmp_path, mini_imdb):
    # C fixed (no choice on the 10 validation reviews, where the strongest regularisation wins): the pipeline learns
    entry = get_stage(stage)(_cfg(stage, tmp_path, *imdb_csv(mini_imdb), "data.n_train=100", "run_name=b",
                                  "stage.params.C=4.0"))
    m = entry.metrics
    assert entry.lineage["data"]["source"].startswith("csv (") and entry.lineage["precision"] is None
    # 100 labels: 90 to train on, 10 to validate on
    assert (m["n_train"], m["n_valid"]) == (90, 10) and m["test_confusion_matrix"]["labels"] == ["neg", "pos"]
    assert m["C"] == 4.0 and set(m["valid_loss_by_C"]) == {"4.0"}
    assert 0.5 < m["test_accuracy"] <= 1.0  # 90 reviews already beat chance
    assert entry.lineage["data"]["n_train"] == 90 and {p.name for p in entry.path.iterdir()} == {
        "metrics.json", "config.yaml", "lineage.json", "manifest.json"}


def test_baselines_and_classify_share_the_split(tmp_path, mini_imdb):
    cfg = _cfg("tfidf", tmp_path, *imdb_csv(mini_imdb), "data.n_train=50")
    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache)
    a = classification_split(corpus, 0.1, 42, 50)
    b = classification_split(corpus, 0.1, 42, 50)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert (len(a[0]), len(a[1])) == (45, 5) and not set(a[0]) & set(a[1])


def test_n_valid_and_n_test_shrink_evaluation_not_training(tmp_path, mini_imdb):
    """data.n_valid scores a subset of the hold-out with the training pool unchanged; data.n_test one fixed
    subset of the test texts, the same for every seed and method."""
    cfg = _cfg("tfidf", tmp_path, *imdb_csv(mini_imdb))
    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache)
    keep, held = classification_split(corpus, 0.25, 42)
    keep_v, held_v = classification_split(corpus, 0.25, 42, n_valid=10)
    assert np.array_equal(keep, keep_v) and len(held) == 40 and len(held_v) == 10 and set(held_v) <= set(held)
    test = corpus.part("test")
    a, b = subsample_test(test, 25), subsample_test(test, 25)
    assert np.array_equal(a.ids, b.ids) and len(a) == 25 and len({tuple(a.doc(i)) for i in range(25)}) == 25
    assert subsample_test(test, None) is test and subsample_test(test, 100) is test
    entries = {seed: get_stage("tfidf")(_cfg("tfidf", tmp_path, *imdb_csv(mini_imdb), "data.n_valid=10",
                                             "data.n_test=25", f"seed={seed}", f"run_name=s{seed}")) for seed in (1, 2)}
    m = {seed: e.metrics for seed, e in entries.items()}
    assert all(x["n_valid"] == 10 and x["n_test"] == 25 for x in m.values())
    assert all((e.lineage["data"]["n_valid"], e.lineage["data"]["n_test"]) == (10, 25) for e in entries.values())
    assert all(sum(map(sum, x["test_confusion_matrix"]["matrix"])) == 25 for x in m.values())
    with pytest.raises(Exception, match="data.n_test=-1 is negative"):
        get_stage("tfidf")(_cfg("tfidf", tmp_path, *imdb_csv(mini_imdb), "data.n_test=-1", "run_name=neg"))


def test_nbsvm_separates_a_multiclass_toy_problem():
    texts = [f"w{c} filler{i % 7} other{i % 3}" for i in range(60) for c in [i % 3]]
    y = np.array([i % 3 for i in range(60)])
    X = CountVectorizer(token_pattern=r"\S+").fit_transform(texts)
    clf = NBSVM(alpha=1.0, C=4.0, max_iter=2000).fit(X, y)
    assert (clf.predict(X) == y).all()
    np.testing.assert_allclose(clf.predict_proba(X).sum(1), 1.0)


def test_C_is_chosen_when_the_training_texts_lack_a_class():
    """A small label budget may leave a class out of the training texts: the validation log-loss scores the
    fitted classes' probability columns as the classes they are (labels 0 and 2 here, not 0 and 1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from ulmfit.stages.baselines import fit_choosing

    train = ["good fine"] * 4 + ["awful bad"] * 4
    pipe = Pipeline([("vec", CountVectorizer()), ("clf", LogisticRegression())])
    _, C, losses = fit_choosing(pipe, [0.1, 10.0], train, np.array([0] * 4 + [2] * 4),
                                ["fine good", "bad"], np.array([0, 2]))
    assert C == 10.0 and losses[10.0] < losses[0.1]
