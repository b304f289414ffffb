"""Batch prediction with one classifier entry, or an ensemble (e.g. forward + backward) averaging probabilities.

input CSV/TSV/.txt -> fastai tokenization -> each model's vocab -> class probabilities -> a CSV with one row
per input row, in input order: ``row, <stage.keep_columns>, prediction, prob_<class>...``. A multilabel
classifier's prediction is its labels at or above its threshold, joined by its delimiter, with a ``prob_<label>``
each; a regression's is the number.

    python -m ulmfit stage=predict stage.input=new_reviews.csv stage.output=preds.csv
    python -m ulmfit stage=predict stage.input=new.csv "stage.models=[imdb]" direction=both   # imdb + imdb-bwd
    python -m ulmfit stage=predict stage.input=new.csv "stage.models=[clas-s1,clas-s2]"       # any ensemble
    python -m ulmfit stage=predict stage.input=new.csv "stage.keep_columns=[id,text]"   # carry input columns
"""

from __future__ import annotations

import pandas as pd
from omegaconf import DictConfig

from ulmfit.files import write_atomic
from ulmfit.inference import default_output, ensemble_threshold, predict_inputs


def run(cfg: DictConfig) -> pd.DataFrame:
    inputs, models, probs, _, seconds = predict_inputs(cfg)
    classes, task = models[0].classes, models[0].task
    kept = {c.removeprefix("input."): inputs[c].tolist() for c in inputs.columns if c.startswith("input.")}
    # the class, the labels (joined by the delimiter) or the number; and each class's or label's probability
    out = pd.DataFrame({"row": range(len(inputs)), **kept,
                        "prediction": task.decisions(probs, classes, ensemble_threshold(models)),
                        **{f"prob_{c}": probs[:, i] for i, c in enumerate(classes)}})
    path = write_atomic(default_output(cfg, "predictions", ".csv"),
                        lambda tmp: out.to_csv(tmp, index=False))
    print(f"predict: {len(out)} rows with {' + '.join(m.entry.ref for m in models)} in {seconds:.1f}s "
          f"({len(out) / seconds:.0f} docs/s) -> {path}")
    return out
