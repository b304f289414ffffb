"""Evaluate a classifier entry (or an ensemble of them) on a labelled CSV/TSV.

Prints accuracy, error rate and macro-F1, and writes the full report (per-class metrics, confusion matrix)
as JSON:   python -m ulmfit stage=evaluate stage.input=test.csv stage.label_col=label
"""

from __future__ import annotations

import json
from typing import Any

from omegaconf import DictConfig

from ulmfit.evaluation import classification_metrics
from ulmfit.files import write_atomic
from ulmfit.inference import default_output, predict_inputs
from ulmfit.report import print_table


def run(cfg: DictConfig) -> dict[str, Any]:
    inputs, models, probs, seconds = predict_inputs(cfg, label_col=cfg.stage.label_col)
    classes = models[0].classes
    report = classification_metrics(probs, [classes.index(c) for c in inputs["label"]], classes)
    report.update({"models": [m.entry.ref for m in models], "input": str(cfg.stage.input), "n": len(inputs),
                   "seconds": round(seconds, 2)})
    path = write_atomic(default_output(cfg.stage, cfg.paths.root, "evaluations", ".json"),
                        lambda tmp: tmp.write_text(json.dumps(report, indent=2), encoding="utf-8"))
    print_table(f"evaluate {' + '.join(report['models'])} on {cfg.stage.input} -> {path}", report)
    return report
