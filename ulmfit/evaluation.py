"""Metrics of each task (sklearn, scipy), and a learner's outputs in the documents' order.

Nothing else of ulmfit is imported here: ``ulmfit.tasks`` reports with these metrics, and the data modules
(loaders, readers) depend on ``ulmfit.tasks``, so an import of them would close a cycle.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, mean_absolute_error, mean_squared_error,
                             precision_recall_curve, precision_recall_fscore_support)


def classification_metrics(probs: np.ndarray, targets: Sequence[int], classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, error rate, per-class precision/recall/F1/support and the confusion matrix (rows = truth)."""
    preds = probs.argmax(1)
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(targets, preds, labels=labels, zero_division=0)
    acc = float(accuracy_score(targets, preds))
    return {"accuracy": acc, "error_rate": 1.0 - acc, "macro_f1": float(np.mean(f)),
            "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                          for i, c in enumerate(classes)},
            "confusion_matrix": {"labels": list(classes),
                                 "matrix": confusion_matrix(targets, preds, labels=labels).tolist()}}


def multilabel_metrics(probs: np.ndarray, targets: np.ndarray, classes: Sequence[str],
                       threshold: float) -> dict[str, Any]:
    """Labels at or above ``threshold``: micro-F1 (every text-label decision counted once), macro-F1 (the mean
    over the labels that occur in ``targets``: a label absent from them has no F1), exact match (the share of
    texts whose predicted label set is exactly right), per-label precision/recall/F1/support."""
    preds = (probs >= threshold).astype(int)
    p, r, f, s = precision_recall_fscore_support(targets, preds, zero_division=0)
    present = np.flatnonzero(s)
    return {"micro_f1": float(f1_score(targets, preds, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(targets, preds, labels=present, average="macro", zero_division=0)),
            "exact_match": float(accuracy_score(targets, preds)),
            "per_label": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                          for i, c in enumerate(classes)}}


def choose_threshold(probs: np.ndarray, targets: np.ndarray) -> float:
    """The one decision threshold for every label with the best micro-F1 on these (validation) texts: micro-F1
    is the F1 of all text-label pairs taken as one binary problem, so sklearn's precision-recall curve over them
    gives it at every threshold that changes a decision."""
    precision, recall, thresholds = precision_recall_curve(targets.ravel(), probs.ravel())
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], np.finfo(float).tiny)
    return float(thresholds[int(np.argmax(f1))])


def regression_metrics(preds: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """RMSE, MAE and Spearman's rank correlation of the predicted numbers with the targets."""
    return {"rmse": float(np.sqrt(mean_squared_error(targets, preds))),
            "mae": float(mean_absolute_error(targets, preds)),
            "spearman": float(spearmanr(preds, targets).statistic)}


def ensemble_report(members: Mapping[str, np.ndarray], targets: Sequence[int],
                    classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Accuracy, error rate, macro-F1 and log-loss of each model's class probabilities (``members``: name ->
    probabilities of the same texts, in the same order) and, under ``ensemble``, of their average."""
    out = {}
    for name, probs in {**members, "ensemble": np.mean(list(members.values()), axis=0)}.items():
        report = classification_metrics(probs, targets, classes)
        picked = np.asarray(probs)[np.arange(len(targets)), np.asarray(targets)]
        out[name] = {**{k: report[k] for k in ("accuracy", "error_rate", "macro_f1")},
                     "loss": float(-np.log(np.clip(picked, 1e-12, None)).mean())}  # the classifier's cross-entropy
    return out


def probs_in_input_order(learn, dl) -> np.ndarray:
    """Class probabilities (or what the loss's activation makes of the outputs: label probabilities, numbers)
    over a ``SortedDL``, back in the documents' original order (``get_preds`` undoes the length sorting)."""
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=dl)
    return probs.float().numpy()

