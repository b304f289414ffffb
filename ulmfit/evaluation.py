"""Classification metrics (sklearn) and prediction with classifier entries."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from ulmfit.data.loaders import clas_loader
from ulmfit.data.tokens import Docs


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
    """Class probabilities over a ``SortedDL``, back in the documents' original order (``get_preds``
    undoes the length sorting)."""
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=dl)
    return probs.float().numpy()


def predict_probs(learn, docs: Docs, bs: int, bptt: int, backwards: bool = False) -> np.ndarray:
    """Class probabilities for ``docs`` in their original order."""
    dl = clas_loader(docs, [0] * len(docs), bs, bptt, shuffle=False, device=learn.dls.device, backwards=backwards)
    return probs_in_input_order(learn, dl)
