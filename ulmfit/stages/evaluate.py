"""Evaluate a classifier entry (or an ensemble of them) on a labelled CSV/TSV.

Prints accuracy, error rate and macro-F1, and writes the full report (per-class metrics, confusion matrix)
as JSON:   python -m ulmfit stage=evaluate stage.input=test.csv stage.label_col=label
An ensemble (several ``stage.models``, or ``direction=both``: each with its backward model) is reported as the
average of its members' class probabilities, with each member's figures beside it (``by_model``).
"""

from __future__ import annotations

import json
from typing import Any

from omegaconf import DictConfig

from ulmfit.evaluation import classification_metrics, ensemble_report
from ulmfit.files import write_atomic
from ulmfit.inference import default_output, predict_inputs
from ulmfit.report import print_table


def run(cfg: DictConfig) -> dict[str, Any]:
    inputs, models, probs, each, seconds = predict_inputs(cfg, label_col=cfg.stage.label_col)
    classes = models[0].classes
    targets = [classes.index(c) for c in inputs["label"]]
    report = classification_metrics(probs, targets, classes)
    report.update({"models": [m.entry.ref for m in models], "input": str(cfg.stage.input), "n": len(inputs),
                   "seconds": round(seconds, 2)})
    if len(models) > 1:
        report["by_model"] = ensemble_report({m.entry.ref: p for m, p in zip(models, each)}, targets, classes)
    path = write_atomic(default_output(cfg, "evaluations", ".json"),
                        lambda tmp: tmp.write_text(json.dumps(report, indent=2), encoding="utf-8"))
    print_table(f"evaluate {' + '.join(report['models'])} on {cfg.stage.input} -> {path}", report)
    if len(models) > 1:
        print("  accuracy  " + ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in report["by_model"].items()))
    return report
