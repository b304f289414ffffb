"""Your own CSV, defaults only: the README's `data=csv` commands from the shipped LM in an empty store, against
TF-IDF, NB-SVM and a linear probe on the same split. Writes experiments/results/own_csv.{csv,md}.

    python -m experiments.own_csv --home runs/ --datasets ag_news imdb10k
    python -m experiments.own_csv --home runs/ --datasets sentiment_dev --tag dev-x --set train.lr=5e-3   # recipe study
    python -m experiments.own_csv --home runs/ --methods ulmfit --direction both   # + backward models, their ensemble

Each dataset is written out as plain `text,label` CSVs (under <home>/csv/<dataset>/) and run exactly as a user
would run their own file:

    python -m ulmfit stage=lm_finetune data=csv data.files.train=train.csv data.files.test=test.csv
    python -m ulmfit stage=classify    data=csv data.files.train=train.csv data.files.test=test.csv
    python -m ulmfit stage=tfidf|nbsvm|probe data=csv ...   (same files)

(plus `run_name=` so that a rerun resumes, and the `--set` overrides of a recipe study, which also name the
entries through `--tag`: `lm.KEY=VALUE` reaches the LM fine-tuning only, `clas.KEY=VALUE` the classifier only). The datasets:

* ``ag_news``: AG News test (7,600 news items, 4 classes; title + description) in a seeded 90/10 split.
* ``imdb10k``: 10,000 IMDB training reviews (a seeded draw) as the training CSV; all 25,000 test reviews as test.
* ``sentiment_dev``: short movie-review texts for choosing recipes without touching any test set: the last
  sentence (5-40 words) of 10,600 IMDB *training* reviews, 9,600 to train on and 1,000 held out. Not a benchmark.

``--direction both`` adds the backward models beside the forward ones (``ulmfit.directions``): the LM
``<lm>-bwd`` fine-tuned from the backward model of the forward LM's parent (the shipped ``general-lm-bwd``), and
the classifier ``<entry>-bwd`` with the same recipe and seeds on it; ``stage=evaluate direction=both`` scores the
pair's averaged ensemble on the test CSV. The ulmfit row gets the backward and ensemble figures beside the
forward ones.

Resumable: every run is a store entry ``<tag>-<dataset>-<method>``; each appends its row as it ends.
"""

from __future__ import annotations

import argparse
import csv
import json
import lzma
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.common import (SHARED_DATA, Step, append_result, backward_step, csv_dataset, entry_lineage,
                                entry_metrics, entry_parent, hardware, result_rows, run_recipe, run_ulmfit, stamp)
from ulmfit.directions import BOTH, FORWARD, backward_name

DATASETS = ("ag_news", "imdb10k", "sentiment_dev")
METHODS = ("tfidf", "nbsvm", "probe", "ulmfit")
SEED = 0  # the draws and splits that build the CSVs


def _write(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    df[["text", "label"]].to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL)
    tmp.replace(path)


def ag_news(shared: Path, out: Path) -> None:
    df = pd.read_csv(shared / "ag_news" / "test.csv", header=None, names=["cls", "title", "desc"])
    names = (shared / "ag_news" / "classes.txt").read_text().split()
    df["text"] = df["title"].str.strip() + ". " + df["desc"].str.replace("\\", " ", regex=False).str.strip()
    df["label"] = [names[c - 1] for c in df["cls"]]
    perm = np.random.default_rng(SEED).permutation(len(df))
    n_test = len(df) // 10
    _write(df.iloc[np.sort(perm[n_test:])], out / "train.csv")
    _write(df.iloc[np.sort(perm[:n_test])], out / "test.csv")


def _imdb(shared: Path, part: str) -> pd.DataFrame:
    with lzma.open(shared / "imdb" / f"{part}.csv.xz", "rt", encoding="utf-8") as fh:
        return pd.read_csv(fh, keep_default_na=False)


def imdb10k(shared: Path, out: Path) -> None:
    train = _imdb(shared, "train")
    _write(train.iloc[np.sort(np.random.default_rng(SEED).permutation(len(train))[:10_000])], out / "train.csv")
    _write(_imdb(shared, "test"), out / "test.csv")


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def last_sentence(review: str) -> str | None:
    """The review's last sentence of 5-40 words (HTML line breaks removed), else None."""
    sentences = [s.strip() for s in SENTENCE_END.split(review.replace("<br />", " ")) if s.strip()]
    for s in reversed(sentences):
        if 5 <= len(s.split()) <= 40:
            return s
    return None


def sentiment_dev(shared: Path, out: Path) -> None:
    train = _imdb(shared, "train")
    train = train.assign(text=train["text"].map(last_sentence)).dropna(subset=["text"])
    pick = train.iloc[np.random.default_rng(SEED).permutation(len(train))[:10_600]]
    _write(pick.iloc[:9_600], out / "train.csv")
    _write(pick.iloc[9_600:], out / "test.csv")


BUILDERS = {"ag_news": ag_news, "imdb10k": imdb10k, "sentiment_dev": sentiment_dev}


def dataset_files(home: Path, name: str, shared: Path) -> tuple[Path, Path]:
    return csv_dataset(home, name, shared, BUILDERS[name])


def plan(dataset: str, tag: str, lm_tag: str | None, methods: list[str], settings: list[str], train: Path,
         test: Path) -> tuple[Step | None, dict[str, Step]]:
    """The dataset's LM fine-tuning (None when no method needs it) and each method's step: the README's own-CSV
    commands plus the files, a run name and the recipe study's ``settings`` (``lm.``/``clas.`` for one of them)."""
    files = {"data": "csv", "data.files.train": train, "data.files.test": test}
    lm_set = dict(s.removeprefix("lm.").split("=", 1) for s in settings if not s.startswith("clas."))
    clas_set = dict(s.removeprefix("clas.").split("=", 1) for s in settings if not s.startswith("lm."))
    lm = Step("lm_finetune", f"{lm_tag or tag}-{dataset}-lm", {**files, **lm_set})
    stages = {"ulmfit": "classify", "probe": "probe"}
    runs = {m: Step(stages.get(m, m), f"{tag}-{dataset}-{m}",
                    {**files, "stage.parent": lm.name, **clas_set} if m in stages else files) for m in methods}
    return (lm if set(stages) & set(methods) else None), runs


def key_value(text: str) -> str:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. train.lr=5e-3")
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs"), help="ULMFIT_HOME: store + token cache + CSVs")
    ap.add_argument("--shared", type=Path, default=SHARED_DATA)
    ap.add_argument("--datasets", nargs="+", default=["ag_news", "imdb10k"], choices=DATASETS)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--tag", default="csv", help="prefix of the entries (a recipe study names its variant here)")
    ap.add_argument("--lm-tag", help="the LM entries' prefix, to reuse another variant's LMs (default: --tag)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", type=key_value,
                    help="overrides for the LM fine-tuning and the classifier (a recipe study; default: none)")
    ap.add_argument("--direction", choices=(FORWARD, BOTH), default=FORWARD,
                    help="both: ULMFiT's backward LM and classifier too, and the pair's averaged ensemble")
    args = ap.parse_args()
    home = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    log = home / "own_csv.log"
    for dataset in args.datasets:
        train, test = dataset_files(home, dataset, args.shared.resolve())
        lm, runs = plan(dataset, args.tag, args.lm_tag, args.methods, args.set, train, test)
        lm_metrics = {}
        both = args.direction == BOTH and "ulmfit" in runs
        if lm is not None:
            run_recipe(home, [lm], log=log)
            lm_metrics = entry_metrics(home, lm.stage, lm.name)
        if both:  # the backward LM, from the backward model of the forward LM's parent
            parent = entry_parent(home, lm.stage, lm.name)
            run_recipe(home, [backward_step(replace(lm, overrides={**lm.overrides, "stage.parent": parent}))], log=log)
        for method, step in runs.items():
            stage, entry = step.stage, step.name
            pair = both and method == "ulmfit"
            if any(r["entry"] == entry and (not pair or r.get("direction") == BOTH) for r in result_rows("own_csv")):
                continue
            run_recipe(home, [step, backward_step(step)] if pair else [step], log=log)
            m = entry_metrics(home, stage, entry)
            row = {"date": stamp(), "entry": entry, "dataset": dataset, "method": method,
                   "overrides": " ".join(args.set), "n_train": m["n_train"], "n_valid": m["n_valid"],
                   "n_test": m["n_test"], "valid_accuracy": round(m["valid_accuracy"], 4),
                   "test_accuracy": round(m["test_accuracy"], 4), "train_s": round(m.get("train_seconds", 0)),
                   "precision": entry_lineage(home, stage, entry).get("precision", "")}
            if method in ("ulmfit", "probe"):
                row.update(lm_ppl_before=round(lm_metrics["valid_perplexity_before"], 1),
                           lm_ppl_after=round(lm_metrics["valid_perplexity"], 1), lm_epochs=lm_metrics["epochs"],
                           lm_train_s=round(lm_metrics["train_seconds"]))
            if method == "ulmfit":
                kept = m.get("kept_epoch") or {}
                row["kept_epoch"] = f"phase {kept['phase'] + 1} epoch {kept['epoch'] + 1}" if kept else "last"
            if pair:  # the backward classifier's figures and the pair's averaged ensemble on the test CSV
                bwd = entry_metrics(home, stage, backward_name(entry))
                bwd_lm = entry_metrics(home, lm.stage, backward_name(lm.name))
                out = home / "evaluations" / f"{entry}-both.json"
                seconds = run_ulmfit("stage=evaluate", f"direction={BOTH}", f"stage.input={test}",
                                     f"stage.output={out}", f"stage.models=[{entry}]", home=home, log=log)
                ensemble = json.loads(out.read_text())
                row.update({"direction": BOTH, "backward_valid_accuracy": round(bwd["valid_accuracy"], 4),
                            "backward_test_accuracy": round(bwd["test_accuracy"], 4),
                            "ensemble_test_accuracy": round(ensemble["accuracy"], 4),
                            "backward_train_s": round(bwd["train_seconds"]),
                            "backward_lm_ppl_after": round(bwd_lm["valid_perplexity"], 1),
                            "ensemble_evaluate_s": round(seconds)})
            print(append_result("own_csv", row, "Your own CSV with the defaults: ULMFiT vs TF-IDF, NB-SVM and a "
                                "linear probe", f"Generated by `python -m experiments.own_csv`, one row per run; "
                                f"this header was last written on {hardware()}. `sentiment_dev` rows are the "
                                "recipe study's development set (IMDB training reviews' last sentences), not a "
                                "benchmark.", key="entry"), flush=True)


if __name__ == "__main__":
    main()
