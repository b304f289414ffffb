"""Batch prediction with one classifier entry, or an ensemble (e.g. forward + backward) averaging probabilities.

input CSV/TSV/.txt -> fastai tokenization -> each model's vocab -> class probabilities -> a CSV with one row
per input row, in input order: ``row, prediction, prob_<class>...`` (plus the input's other columns).

    python -m ulmfit stage=predict stage.input=new_reviews.csv stage.output=preds.csv
    python -m ulmfit stage=predict stage.input=new.csv "stage.models=[imdb-fwd,imdb-bwd]"
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from ulmfit.data import TokenizerSettings
from ulmfit.inference import ensemble_probs, load_ensemble, read_inputs, write_atomic_csv
from ulmfit.store import Store
from ulmfit.training import resolve_device

log = logging.getLogger(__name__)


def default_output(cfg: DictConfig, kind: str, suffix: str) -> Path:
    if cfg.stage.output:
        return Path(cfg.stage.output)
    stem = Path(cfg.stage.input).name.split(".")[0]
    return Path(cfg.paths.root) / kind / f"{stem}-{'+'.join(cfg.stage.models or ['latest'])}{suffix}"


def run(cfg: DictConfig) -> pd.DataFrame:
    inputs = read_inputs(cfg.stage.input, cfg.stage.text_col, encoding=cfg.stage.encoding)
    models = load_ensemble(Store(cfg.paths.store), cfg.stage.models, resolve_device(cfg.train.device))
    t0 = time.perf_counter()
    settings = TokenizerSettings(lang=cfg.tokenizer.lang, n_workers=cfg.tokenizer.n_workers)
    probs = ensemble_probs(models, inputs["text"].tolist(), settings, cfg.stage.bs)
    seconds = time.perf_counter() - t0
    classes = models[0].classes
    out = pd.DataFrame({"row": range(len(inputs)), "prediction": [classes[i] for i in probs.argmax(1)],
                        **{f"prob_{c}": probs[:, i] for i, c in enumerate(classes)}})
    path = write_atomic_csv(out, default_output(cfg, "predictions", ".csv"))
    print(f"predict: {len(out)} rows with {' + '.join(m.entry.ref for m in models)} in {seconds:.1f}s "
          f"({len(out) / seconds:.0f} docs/s) -> {path}")
    return out
