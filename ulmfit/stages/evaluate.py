"""Evaluate a classifier entry (or an ensemble of them) on a labelled CSV/TSV.

Prints accuracy, error rate and macro-F1, and writes the full report (per-class metrics, confusion matrix)
as JSON:   python -m ulmfit stage=evaluate stage.input=test.csv stage.label_col=label
A multilabel classifier is scored by micro-F1, macro-F1 and exact match at its threshold, a regression by RMSE,
MAE and Spearman (``ulmfit.tasks``); the labels are read as it was trained to read them.
An ensemble (several ``stage.models``, or ``direction=both``: each with its backward model) is reported as the
average of its members' class probabilities, with each member's figures beside it (``by_model``).
"""

from __future__ import annotations

import json
from typing import Any

from omegaconf import DictConfig

from ulmfit.evaluation import ensemble_report
from ulmfit.files import write_atomic
from ulmfit.inference import default_output, ensemble_threshold, predict_inputs
from ulmfit.report import print_table
from ulmfit.tasks import CLASSIFICATION


def run(cfg: DictConfig) -> dict[str, Any]:
    inputs, models, probs, each, seconds = predict_inputs(cfg, label_col=cfg.stage.label_col)
    classes, task, threshold = models[0].classes, models[0].task, ensemble_threshold(models)
    targets = task.targets(inputs["label"].tolist(), classes, str(cfg.stage.input))
    report = task.report(probs, targets, classes, threshold)
    report.update({"models": [m.entry.ref for m in models], "input": str(cfg.stage.input), "n": len(inputs),
                   "seconds": round(seconds, 2), **({"threshold": threshold} if threshold is not None else {})})
    if len(models) > 1 and task.name == CLASSIFICATION:
        report["by_model"] = ensemble_report({m.entry.ref: p for m, p in zip(models, each)}, targets, classes)
    elif len(models) > 1:  # each member's own figures (a multilabel member at its own threshold)
        report["by_model"] = {m.entry.ref: task.headline(task.report(p, targets, classes, m.threshold))
                              for m, p in zip(models, each)}
    path = write_atomic(default_output(cfg, "evaluations", ".json"),
                        lambda tmp: tmp.write_text(json.dumps(report, indent=2), encoding="utf-8"))
    print_table(f"evaluate {' + '.join(report['models'])} on {cfg.stage.input} -> {path}", report)
    if len(models) > 1:
        first = next(iter(task.headline(report)))  # accuracy, micro-F1 or RMSE
        print(f"  {first}  " + ", ".join(f"{k} {v[first]:.4f}" for k, v in report["by_model"].items()))
    return report
