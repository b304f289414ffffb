"""Evaluate a classifier entry (or an ensemble of them) on a labelled CSV/TSV.

Prints accuracy, error rate and macro-F1, and writes the full report (per-class metrics, confusion matrix)
as JSON:   python -m ulmfit stage=evaluate stage.input=test.csv stage.label_col=label
"""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

from omegaconf import DictConfig

from ulmfit.data import TokenizerSettings
from ulmfit.errors import UsageError
from ulmfit.evaluation import classification_metrics
from ulmfit.inference import ensemble_probs, load_ensemble, read_inputs
from ulmfit.report import print_table
from ulmfit.stages.predict import default_output
from ulmfit.store import Store
from ulmfit.training import resolve_device


def run(cfg: DictConfig) -> dict[str, Any]:
    inputs = read_inputs(cfg.stage.input, cfg.stage.text_col, cfg.stage.label_col, encoding=cfg.stage.encoding)
    models = load_ensemble(Store(cfg.paths.store), cfg.stage.models, resolve_device(cfg.train.device))
    classes = models[0].classes
    unseen = sorted(set(inputs["label"]) - set(classes))
    if unseen:
        raise UsageError(f"{cfg.stage.input} has labels {unseen[:5]} that {models[0].entry.ref} never saw "
                         f"(it knows {classes}). Fix stage.label_col or the labels.")
    t0 = time.perf_counter()
    settings = TokenizerSettings(lang=cfg.tokenizer.lang, n_workers=cfg.tokenizer.n_workers)
    probs = ensemble_probs(models, inputs["text"].tolist(), settings, cfg.stage.bs)
    report = classification_metrics(probs, [classes.index(c) for c in inputs["label"]], classes)
    report.update({"models": [m.entry.ref for m in models], "input": str(cfg.stage.input), "n": len(inputs),
                   "seconds": round(time.perf_counter() - t0, 2)})
    path = default_output(cfg, "evaluations", ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{secrets.token_hex(4)}"
    tmp.write_text(json.dumps(report, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    print_table(f"evaluate {' + '.join(report['models'])} on {cfg.stage.input} -> {path}", report)
    return report
