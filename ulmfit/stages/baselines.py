"""Bag-of-n-grams baselines, stages ``tfidf`` and ``nbsvm``: the same data config, tokens, splits, metrics and store
entry format as ``classify``, with an sklearn pipeline instead of the AWD-LSTM.

fastai tokens (from the shared token cache) -> train/valid split of ``classify`` -> sklearn pipeline ->
valid + test metrics -> store entry ``<tfidf|nbsvm>/<run>`` (metrics, config, lineage; no weights).

- TF-IDF word 1–2-grams + logistic regression (an sklearn ``Pipeline``).
- NB-SVM (Wang & Manning 2012): binarized 1–2-gram features scaled by the naive-Bayes log-count ratio r,
  then a linear classifier; one-vs-rest for more than two classes (one r per class), as in their paper's
  setup (here with logistic regression as the linear model, the common "NBSVM-LR" variant).

Per ``data.task`` (``ulmfit.tasks``): multilabel runs either classifier one-vs-rest (sklearn's
``OneVsRestClassifier``: one binary model per label) and picks the labels at one threshold chosen on validation,
as ``classify`` does; regression is TF-IDF + ridge regression, its alpha chosen on validation as C is (NB-SVM's
ratios need classes: refused for regression).
They read the same text as the classifier: several ``data.text_cols`` joined with fastai's field markers, which are
plain tokens to the n-grams; with ``data.tokenizer=sentencepiece``, n-grams of pieces, from a model trained on the
training texts (a baseline has no parent LM to take one from).
Options: ``stage.params`` (conf/stage/tfidf.yaml, conf/stage/nbsvm.yaml).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np
from omegaconf import DictConfig, OmegaConf
from scipy import sparse
# sklearn.base and sklearn.metrics load with fastai anyway (fastai.metrics imports sklearn.metrics) and
# sklearn.pipeline is light; the models and vectorizers are imported where they are used, so that the other
# stages' processes do not load them
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import log_loss, mean_squared_error
from sklearn.pipeline import Pipeline

from ulmfit.data import labelled_classes, load_corpus, scored_test, split_of
from ulmfit.data.tokens import Docs, TokenizedCorpus
from ulmfit.errors import UsageError
from ulmfit.evaluation import choose_threshold
from ulmfit.stages.common import lineage, open_store, save_entry, subword_model
from ulmfit.store import Entry
from ulmfit.tasks import MULTILABEL, REGRESSION, Task


def _vectorizer_args(cfg: Mapping[str, Any]) -> dict[str, Any]:
    # Texts arrive as fastai tokens joined by spaces: split on whitespace only, keep fastai's lowercasing.
    return {"token_pattern": r"\S+", "lowercase": False, "ngram_range": tuple(cfg["ngram_range"]),
            "min_df": cfg["min_df"], "max_features": cfg["max_features"]}


def tfidf_pipeline(cfg: Mapping[str, Any], seed: int, task: Task = Task()) -> Pipeline:
    """TF-IDF word n-grams + logistic regression (one-vs-rest for multilabel), or + ridge regression
    (``stage.params`` of conf/stage/tfidf.yaml)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge
    if task.name == REGRESSION:
        model = Ridge(alpha=cfg["alpha"], random_state=seed)
    else:
        model = _per_task(LogisticRegression(C=cfg["C"], max_iter=cfg["max_iter"], random_state=seed), task)
    return Pipeline([("tfidf", TfidfVectorizer(sublinear_tf=cfg["sublinear_tf"], **_vectorizer_args(cfg))),
                     ("clf", model)])


def _per_task(classifier: BaseEstimator, task: Task) -> BaseEstimator:
    """A single-label classifier as the task needs it: itself, or one binary copy per label (multilabel)."""
    from sklearn.multiclass import OneVsRestClassifier
    return OneVsRestClassifier(classifier) if task.name == MULTILABEL else classifier


class NBSVM(BaseEstimator, ClassifierMixin):
    """Linear classifier on NB-log-count-ratio-scaled binary features (one-vs-rest)."""

    def __init__(self, alpha: float, C: float, max_iter: int, seed: int = 0):
        self.alpha, self.C, self.max_iter, self.seed = alpha, C, max_iter, seed

    def fit(self, X: sparse.csr_matrix, y: np.ndarray) -> "NBSVM":
        from sklearn.linear_model import LogisticRegression
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


def nbsvm_pipeline(cfg: Mapping[str, Any], seed: int, task: Task = Task()) -> Pipeline:
    """Binary n-gram counts + ``NBSVM`` (one-vs-rest for multilabel; ``stage.params`` of conf/stage/nbsvm.yaml)."""
    from sklearn.feature_extraction.text import CountVectorizer
    check_applies("nbsvm", task)
    return Pipeline([("counts", CountVectorizer(binary=True, **_vectorizer_args(cfg))),
                     ("clf", _per_task(NBSVM(alpha=cfg["alpha"], C=cfg["C"], max_iter=cfg["max_iter"], seed=seed),
                                       task))])


BASELINES = {"tfidf": tfidf_pipeline, "nbsvm": nbsvm_pipeline}


def check_applies(name: str, task: Task) -> None:
    """Refuse a baseline that has no form for ``task`` (NB-SVM's log-count ratios compare classes)."""
    if name == "nbsvm" and task.name == REGRESSION:
        raise UsageError("stage=nbsvm weighs n-grams by how much more often they occur in one class than in the "
                         "others, and data.task=regression has no classes: use stage=tfidf (TF-IDF + ridge).")


def make_baseline(name: str, cfg: Mapping[str, Any], seed: int, task: Task = Task()) -> Pipeline:
    """The unfitted sklearn pipeline of baseline ``name`` with options ``cfg`` for ``task``."""
    if name not in BASELINES:
        raise UsageError(f"Unknown baseline {name!r}; use one of {', '.join(BASELINES)}.")
    return BASELINES[name](cfg, seed, task)


def validation_loss(task: Task) -> Callable[[BaseEstimator, Any, np.ndarray], float]:
    """How a fitted model's regularisation is judged on validation texts: log-loss of the classes it fitted;
    multilabel: the mean binary log-loss over text-label pairs (what ``classify`` trains on, BCE); regression:
    the mean squared error."""
    if task.name == REGRESSION:
        return lambda model, X, y: float(mean_squared_error(y, model.predict(X)))
    if task.name == MULTILABEL:
        return lambda model, X, y: float(log_loss(y.ravel(), model.predict_proba(X).ravel(), labels=[0, 1]))
    return lambda model, X, y: float(log_loss(y, model.predict_proba(X), labels=model.classes_))


def joined_tokens(corpus: TokenizedCorpus, docs: Docs) -> list[str]:
    """Each document's fastai tokens joined by spaces: what the vectorizers split on whitespace."""
    tokens = np.asarray(corpus.tokens, dtype=object)
    return [" ".join(tokens[docs.doc(i)]) for i in range(len(docs))]


def fit_choosing(pipe: Pipeline, grid: list[float], train_texts: list[str], y_train: np.ndarray,
                 valid_texts: list[str], y_valid: np.ndarray, param: str = "C",
                 task: Task = Task()) -> tuple[Pipeline, float, dict[float, float]]:
    """Fit ``pipe`` once per value of its model's ``param`` (C; ridge's alpha) in ``grid`` on the training texts
    and keep the one with the lowest validation loss (``validation_loss``): the baselines choose their
    regularisation on the same validation texts, and by the same measure, as the classifier chooses its epoch
    (``train.monitor=valid_loss``). Loss rather than accuracy, because on a few validation texts many C tie on
    accuracy, and a tie broken towards strong regularisation predicts one class. The features are fitted once
    (they do not depend on C). Returns the pipeline, the chosen value and the validation loss of each."""
    from sklearn.multiclass import OneVsRestClassifier
    features, model = pipe[:-1], pipe[-1]
    X_train = features.fit_transform(train_texts, y_train)
    X_valid = features.transform(valid_texts)
    loss = validation_loss(task)
    key = f"estimator__{param}" if isinstance(model, OneVsRestClassifier) else param  # the per-label models'
    losses, best = {}, None
    for value in grid:
        fitted = clone(model).set_params(**{key: value}).fit(X_train, y_train)
        losses[value] = loss(fitted, X_valid, y_valid)
        if best is None or losses[value] < losses[best[0]]:
            best = (value, fitted)
    return Pipeline([*features.steps, (pipe.steps[-1][0], best[1])]), best[0], losses


def run(cfg: DictConfig) -> Entry:
    """Stage ``tfidf`` or ``nbsvm`` (``stage.name``): fit on classify's training split with C (ridge's alpha)
    chosen on its validation split (``stage.params.C``/``alpha``: one value, or a list to choose from), and for
    multilabel the threshold too; score valid and test."""
    stage, task = cfg.stage.name, Task.of_data(cfg.data)
    check_applies(stage, task)
    store, name = open_store(cfg, stage)
    params = OmegaConf.to_container(cfg.stage.params)
    param = "alpha" if task.name == REGRESSION else "C"
    grid = params[param] if isinstance(params[param], list) else [params[param]]
    if not grid or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 for c in grid):
        raise UsageError(f"stage.params.{param}={params[param]!r}: use a positive number or a list of them "
                         f"(e.g. 'stage.params.{param}=[0.1,1,10]').")
    sp_model = subword_model(cfg, None, ["train"])  # data.tokenizer=sentencepiece: trained on the texts
    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache, sp_model)
    classes = labelled_classes(corpus, task)
    train_all = corpus.part("train")
    keep, held = split_of(corpus, cfg.data, cfg.data_seed)
    texts = joined_tokens(corpus, train_all)
    y = task.targets(train_all.labels, classes, "the 'train' part")
    pipe = make_baseline(stage, {**params, param: grid[0]}, cfg.seed, task)
    t0 = time.perf_counter()
    pipe, chosen, valid_loss_by = fit_choosing(pipe, grid, [texts[i] for i in keep], y[keep],
                                               [texts[i] for i in held], y[held], param, task)
    seconds = time.perf_counter() - t0

    def scores(docs_texts: list[str]) -> np.ndarray:
        return pipe.predict(docs_texts) if task.name == REGRESSION else pipe.predict_proba(docs_texts)

    valid_scores = scores([texts[i] for i in held])
    threshold = choose_threshold(valid_scores, y[held]) if task.name == MULTILABEL else None
    valid = task.headline(task.report(valid_scores, y[held], classes, threshold))
    metrics: dict[str, Any] = {f"valid_{k}": v for k, v in valid.items()}
    if "test" in corpus.parts:
        test = scored_test(corpus.part("test"), cfg.data, classes, task)
        report = task.report(scores(joined_tokens(corpus, test)), task.targets(test.labels, classes, "test"),
                             classes, threshold)
        metrics.update({"test_" + k: v for k, v in report.items()})
    metrics.update({param: chosen, f"valid_loss_by_{param}": {str(c): v for c, v in valid_loss_by.items()},
                    **({"threshold": threshold} if threshold is not None else {}),
                    "train_seconds": round(seconds, 2), "n_train": int(len(keep)), "n_valid": int(len(held)),
                    "n_test": len(test) if "test" in corpus.parts else 0,
                    "n_features": int(len(pipe[0].vocabulary_)), "classes": classes})
    taken = {"parts": ["train"], "n_train": int(len(keep)), "n_valid": int(len(held)), "n_test": metrics["n_test"]}
    return save_entry(store, stage, name, cfg, metrics=metrics, lineage=lineage(cfg, corpus, taken),
                      sp_model=sp_model)
