"""Bag-of-n-grams baselines on the same tokens, splits and metrics as ``classify``.

- TF-IDF word 1–2-grams + logistic regression (an sklearn ``Pipeline``).
- NB-SVM (Wang & Manning 2012): binarized 1–2-gram features scaled by the naive-Bayes log-count ratio r,
  then a linear classifier; one-vs-rest for more than two classes (one r per class), as in their paper's
  setup (here with logistic regression as the linear model, the common "NBSVM-LR" variant).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from ulmfit.errors import UsageError


def _vectorizer_args(cfg: Mapping[str, Any]) -> dict[str, Any]:
    # Texts arrive as fastai tokens joined by spaces: split on whitespace only, keep fastai's lowercasing.
    return {"token_pattern": r"\S+", "lowercase": False, "ngram_range": tuple(cfg.get("ngram_range", (1, 2))),
            "min_df": cfg.get("min_df", 1), "max_features": cfg.get("max_features")}


def tfidf_pipeline(cfg: Mapping[str, Any], seed: int) -> Pipeline:
    return Pipeline([
        ("tfidf", TfidfVectorizer(sublinear_tf=cfg.get("sublinear_tf", True), **_vectorizer_args(cfg))),
        ("clf", LogisticRegression(C=cfg.get("C", 4.0), max_iter=cfg.get("max_iter", 2000), random_state=seed)),
    ])


class NBSVM(BaseEstimator, ClassifierMixin):
    """Linear classifier on NB-log-count-ratio-scaled binary features (one-vs-rest)."""

    def __init__(self, alpha: float = 1.0, C: float = 4.0, max_iter: int = 2000, seed: int = 0):
        self.alpha, self.C, self.max_iter, self.seed = alpha, C, max_iter, seed

    def fit(self, X: sparse.csr_matrix, y: np.ndarray) -> "NBSVM":
        self.classes_ = np.unique(y)
        X = (X > 0).astype(np.float64)
        self.r_, self.models_ = [], []
        for c in self.classes_:  # for two classes this is the paper's binary NB-SVM, computed for each side
            pos, neg = X[y == c].sum(0) + self.alpha, X[y != c].sum(0) + self.alpha
            r = np.asarray(np.log((pos / pos.sum()) / (neg / neg.sum()))).ravel()
            clf = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)
            clf.fit(X.multiply(r).tocsr(), (y == c).astype(int))
            self.r_.append(r)
            self.models_.append(clf)
        return self

    def decision_function(self, X: sparse.csr_matrix) -> np.ndarray:
        X = (X > 0).astype(np.float64)
        return np.stack([m.decision_function(X.multiply(r).tocsr()) for r, m in zip(self.r_, self.models_)], 1)

    def predict_proba(self, X: sparse.csr_matrix) -> np.ndarray:
        z = self.decision_function(X)
        z = np.exp(z - z.max(1, keepdims=True))  # softmax over the one-vs-rest scores
        return z / z.sum(1, keepdims=True)

    def predict(self, X: sparse.csr_matrix) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(1)]


def nbsvm_pipeline(cfg: Mapping[str, Any], seed: int) -> Pipeline:
    return Pipeline([("counts", CountVectorizer(binary=True, **_vectorizer_args(cfg))),
                     ("clf", NBSVM(alpha=cfg.get("alpha", 1.0), C=cfg.get("C", 4.0),
                                   max_iter=cfg.get("max_iter", 2000), seed=seed))])


BASELINES = {"tfidf": tfidf_pipeline, "nbsvm": nbsvm_pipeline}


def make_baseline(name: str, cfg: Mapping[str, Any], seed: int) -> Pipeline:
    if name not in BASELINES:
        raise UsageError(f"Unknown baseline {name!r}; use one of {', '.join(BASELINES)}.")
    return BASELINES[name](cfg, seed)
