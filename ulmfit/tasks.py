"""What ``data.task`` changes: how a label string becomes a target, and the classifier's output, loss, metrics and
decisions for it. Everything else (tokens, splits, the encoder, gradual unfreezing, the store) is the same for
every task.

- ``classification``: one class per text (fastai's ``CategoryBlock``): softmax over the classes, cross-entropy,
  accuracy; the prediction is the most probable class.
- ``multilabel``: any number of labels per text, joined by ``data.label_delim`` in one column (fastai's
  ``MultiCategoryBlock``): one sigmoid per label, binary cross-entropy (``BCEWithLogitsLossFlat``), micro-F1 at
  0.5 while training; the labels predicted are those whose probability reaches one threshold, chosen on the
  validation texts (``ulmfit.evaluation.choose_threshold``) and stored with the entry.
- ``regression``: a number per text (fastai's ``RegressionBlock``): one output squashed into the training
  targets' range (fastai's ``y_range``, ``SigmoidRange``), mean squared error, RMSE and Spearman while training.

Label strings stay unparsed in the token cache (a corpus is the same whatever task reads it, so an LM fine-tuned
on a file fits every task on it); ``Task.targets`` parses and checks them where a stage needs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from ulmfit.errors import UsageError
from ulmfit.options import TASK_MONITORS, TASKS

if TYPE_CHECKING:
    from fastai.losses import BaseLoss

CLASSIFICATION, MULTILABEL, REGRESSION = TASKS
HEADLINE = {CLASSIFICATION: ("accuracy",), MULTILABEL: ("micro_f1", "macro_f1", "exact_match"),
            REGRESSION: ("rmse", "mae", "spearman")}


@dataclass(frozen=True)
class Task:
    """A ``data.task`` and, for ``multilabel``, the delimiter between a text's labels."""

    name: str = CLASSIFICATION
    label_delim: str = ";"

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise UsageError(f"data.task={self.name!r}; use one of {', '.join(TASKS)}.")

    @classmethod
    def of_data(cls, data_cfg: Mapping[str, Any]) -> "Task":
        """The task a data config asks for (configs without ``task``, e.g. data=trec, classify)."""
        return cls(data_cfg.get("task") or CLASSIFICATION, data_cfg.get("label_delim") or ";")

    @classmethod
    def of_entry(cls, info: Mapping[str, Any]) -> "Task":
        """The task a classifier entry's ``model.json`` records (entries from before tasks: classification)."""
        return cls(info.get("task", CLASSIFICATION), info.get("label_delim") or ";")

    def record(self) -> dict[str, str]:
        """What ``model.json`` records, for ``of_entry``."""
        return {"task": self.name, **({"label_delim": self.label_delim} if self.name == MULTILABEL else {})}

    @property
    def monitors(self) -> tuple[str, ...]:
        """The values ``train.monitor`` may name: the validation loss and this task's metric in fastai's Recorder."""
        return TASK_MONITORS[self.name]

    # ------------------------------------------------------------------------------------------- labels
    def split(self, label: str) -> list[str]:
        """A multilabel cell's labels (blanks around the delimiter and empty pieces dropped)."""
        return [p for p in (s.strip() for s in label.split(self.label_delim)) if p]

    def check_rows(self, labels: Sequence[str], where: str) -> None:
        """Every labelled row can be read as this task's target: a multilabel row has at least one label, a
        regression target is a finite number. ``where`` names the file or part for the message."""
        if self.name == REGRESSION:
            for i, label in enumerate(labels):
                if not _is_number(label):
                    raise UsageError(f"{where}: the target of data row {i + 1} is {label!r}, not a number "
                                     f"(data.task=regression). Fix that row, or point data.label_col at the "
                                     f"numeric column.")
        elif self.name == MULTILABEL:
            for i, label in enumerate(labels):
                if not self.split(label):
                    raise UsageError(f"{where}: data row {i + 1} has no labels ({label!r}; data.task=multilabel, "
                                     f"labels joined by data.label_delim={self.label_delim!r}). Give it at least "
                                     f"one label or drop it.")

    def label_set(self, labels: Sequence[str]) -> set[str]:
        """The class names occurring in ``labels`` (none for regression)."""
        if self.name == REGRESSION:
            return set()
        if self.name == MULTILABEL:
            return {name for label in labels for name in self.split(label)}
        return set(labels)

    def classes(self, labels: Sequence[str], where: str = "the training texts") -> list[str]:
        """The sorted class (or label) names of the training labels; ``[]`` for regression, which needs two
        different targets at least. Fails on unreadable rows and on fewer than two classes."""
        if self.name == CLASSIFICATION:
            classes = sorted(set(labels))
            if "" in classes or len(classes) < 2:
                raise UsageError(f"Classification needs labelled training texts with at least two classes; found "
                                 f"{classes[:10]}. Check data.label_col.")
            return classes
        self.check_rows(labels, where)
        if self.name == REGRESSION:
            if len({float(v) for v in labels}) < 2:
                raise UsageError(f"Regression needs at least two different targets in {where}; all are "
                                 f"{labels[0]!r}. Check data.label_col.")
            return []
        classes = sorted(self.label_set(labels))
        if len(classes) < 2:
            raise UsageError(f"Multi-label classification needs at least two different labels in {where}; found "
                             f"{classes}. Check data.label_col and data.label_delim.")
        return classes

    def targets(self, labels: Sequence[str], classes: Sequence[str], where: str) -> np.ndarray:
        """The targets of ``labels``: class indices (int64), a 0/1 row per text over ``classes`` (float32), or
        the numbers (float32). Fails on unreadable rows and on labels the classes lack (no model predicts them)."""
        self.check_rows(labels, where)
        if self.name == REGRESSION:
            return np.array([float(v) for v in labels], dtype=np.float32)
        if unseen := sorted(self.label_set(labels) - set(classes)):
            raise UsageError(f"{where[:1].upper()}{where[1:]} labels {unseen[:5]} never occur in training "
                             f"({list(classes)[:10]}); fix the data.")
        index = {c: i for i, c in enumerate(classes)}
        if self.name == CLASSIFICATION:
            return np.array([index[c] for c in labels], dtype=np.int64)
        out = np.zeros((len(labels), len(classes)), dtype=np.float32)
        for i, label in enumerate(labels):
            out[i, [index[c] for c in self.split(label)]] = 1
        return out

    def item_targets(self, targets: np.ndarray) -> list[torch.Tensor]:
        """One tensor per text, typed as fastai's blocks type them (``Categorize``, ``EncodedMultiCategorize``,
        ``RegressionSetup``)."""
        from fastai.torch_core import TensorCategory, TensorMultiCategory
        t = torch.as_tensor(targets)
        if self.name == CLASSIFICATION:
            return [TensorCategory(y) for y in t]
        return [TensorMultiCategory(y) for y in t] if self.name == MULTILABEL else list(t)

    # ------------------------------------------------------------------------------------------- the model
    def n_outputs(self, classes: Sequence[str]) -> int:
        return 1 if self.name == REGRESSION else len(classes)

    def y_range(self, targets: np.ndarray) -> list[float] | None:
        """Regression: the training targets' range, which the head's output is squashed into (fastai's
        ``y_range``): the first predictions sit mid-range instead of at 0, and none falls outside the scale."""
        return [float(targets.min()), float(targets.max())] if self.name == REGRESSION else None

    def loss_func(self) -> "BaseLoss":
        """fastai's flat loss for the task; its ``activation`` turns the outputs into what ``get_preds`` returns
        (class probabilities, label probabilities, the number)."""
        from fastai.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat
        return {CLASSIFICATION: CrossEntropyLossFlat, MULTILABEL: BCEWithLogitsLossFlat,
                REGRESSION: MSELossFlat}[self.name]()

    def metrics(self) -> list:
        """fastai metrics recorded every epoch (``monitors`` names them)."""
        from fastai.metrics import F1ScoreMulti, SpearmanCorrCoef, accuracy, rmse
        return {CLASSIFICATION: [accuracy], MULTILABEL: [F1ScoreMulti(average="micro")],
                REGRESSION: [rmse, SpearmanCorrCoef()]}[self.name]

    # ------------------------------------------------------------------------------------------- outputs
    def scores(self, outputs: np.ndarray) -> np.ndarray:
        """``get_preds`` output as the task reads it: probabilities (n, classes), or the numbers (n,)."""
        return outputs.reshape(-1) if self.name == REGRESSION else outputs

    def decisions(self, scores: np.ndarray, classes: Sequence[str], threshold: float | None = None) -> list:
        """What is predicted for each text: the class, the labels at or above ``threshold`` joined by the
        delimiter ("" for none), or the number."""
        if self.name == REGRESSION:
            return [float(v) for v in scores]
        if self.name == CLASSIFICATION:
            return [classes[i] for i in scores.argmax(1)]
        return [self.label_delim.join(classes[j] for j in np.flatnonzero(row >= threshold)) for row in scores]

    def headline(self, report: Mapping[str, Any]) -> dict[str, float]:
        """The figures of a ``report`` that sum it up: accuracy; micro-F1, macro-F1, exact match; RMSE, MAE,
        Spearman."""
        return {k: report[k] for k in HEADLINE[self.name]}

    def report(self, scores: np.ndarray, targets: np.ndarray, classes: Sequence[str],
               threshold: float | None = None) -> dict[str, Any]:
        """The task's metrics (``ulmfit.evaluation``) of ``scores`` against ``targets``."""
        from ulmfit.evaluation import classification_metrics, multilabel_metrics, regression_metrics
        if self.name == CLASSIFICATION:
            return classification_metrics(scores, targets, classes)
        if self.name == MULTILABEL:
            return multilabel_metrics(scores, targets, classes, threshold)
        return regression_metrics(scores, targets)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
