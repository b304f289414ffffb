"""The task types (``data.task``) on real data, defaults only, from the shipped LM: many classes (TREC-50), several
labels per text (TREC's coarse and fine label together) and a number per text (IMDB's 1-10 star ratings), each
ULMFiT against the TF-IDF baseline (and NB-SVM where it applies). Writes experiments/results/tasks_<dataset>.{csv,md}.

    python -m experiments.tasks --home runs-task/                          # all three
    python -m experiments.tasks --home runs-task/ --datasets trec50 trec_multilabel

Each dataset is written out as plain `text,label` CSVs (under <home>/csv/<dataset>/) and run as the README's
common tasks run a user's file, with only `data.task` (and the parent LM) added:

    python -m ulmfit stage=lm_finetune data=csv data.files.train=train.csv data.files.test=test.csv stage.parent=general-lm
    python -m ulmfit stage=classify data=csv data.files.train=train.csv data.files.test=test.csv data.task=<task>
    python -m ulmfit stage=tfidf|nbsvm data=csv ... data.task=<task>

* ``trec50``: TREC's 5,452 training questions with their 50 fine labels (``DESC:manner``), TREC_10's 500 as test.
* ``trec_multilabel``: the same questions with both labels (``DESC;DESC:manner``), data.task=multilabel. Its
  texts are trec50's, so the classifier starts from trec50's fine-tuned LM (stage.parent names it).
* ``imdb_ratings``: IMDB reviews with their 1-10 star rating (from the review file names in
  ``*_files.txt.xz``), data.task=regression: a seeded 2,000 of the 25,000 training reviews (10% of them validate)
  and a seeded 2,000 of the 25,000 test reviews.

Resumable: every run is a store entry ``<tag>-<dataset>-<method>``; each appends its row as it ends (a row is read
from its entry, dated by it: deleting a table and running again rewrites it from the store without training).
"""

from __future__ import annotations

import argparse
import csv
import lzma
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.common import (SHARED_DATA, Step, append_result, csv_dataset, entry_lineage, entry_metrics,
                                hardware, result_rows, run_recipe)

TASKS = {"trec50": "classification", "trec_multilabel": "multilabel", "imdb_ratings": "regression"}
LM_OF = {"trec50": "trec", "trec_multilabel": "trec", "imdb_ratings": "imdb_ratings"}  # whose texts each LM reads
METHODS = ("ulmfit", "tfidf", "nbsvm")
IMDB_SIZES = {"train": 2_000, "test": 2_000}
SEED = 0  # the IMDB draws
# the figures each task is scored by (the entry's test_<name>), in the table's order
SCORES = {"classification": ("accuracy", "error_rate", "macro_f1"),
          "multilabel": ("micro_f1", "exact_match", "macro_f1"), "regression": ("rmse", "spearman", "mae")}


def _write(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    df[["text", "label"]].to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL)
    tmp.replace(path)


def trec(shared: Path, out: Path, both: bool) -> None:
    """TREC's fine labels (``COARSE:fine``), or with ``both`` the coarse one too (``COARSE;COARSE:fine``)."""
    from ulmfit.data.readers import TrecReader
    for part, df in TrecReader(shared / "trec", label="fine").read().items():
        if both:
            df = df.assign(label=[f"{fine.split(':')[0]};{fine}" for fine in df["label"]])
        _write(df, out / f"{part}.csv")


def imdb_ratings(shared: Path, out: Path) -> None:
    """A seeded draw of IMDB reviews per part with their star rating: ``<id>_<rating>.txt`` in the file list that
    runs parallel to each CSV's rows."""
    for part, n in IMDB_SIZES.items():
        with lzma.open(shared / "imdb" / f"{part}.csv.xz", "rt", encoding="utf-8") as fh:
            df = pd.read_csv(fh, keep_default_na=False)
        with lzma.open(shared / "imdb" / f"{part}_files.txt.xz", "rt", encoding="utf-8") as fh:
            files = [line.strip() for line in fh if line.strip()]
        if len(files) != len(df):
            raise SystemExit(f"{part}: {len(files)} file names for {len(df)} reviews")
        df["label"] = [int(Path(f).stem.split("_")[1]) for f in files]
        _write(df.iloc[np.sort(np.random.default_rng(SEED).permutation(len(df))[:n])], out / f"{part}.csv")


BUILDERS = {"trec50": lambda s, o: trec(s, o, both=False), "trec_multilabel": lambda s, o: trec(s, o, both=True),
            "imdb_ratings": imdb_ratings}


def dataset_files(home: Path, name: str, shared: Path) -> tuple[Path, Path]:
    return csv_dataset(home, name, shared, BUILDERS[name])


def methods_of(dataset: str, methods: list[str]) -> list[str]:
    """NB-SVM needs classes: not for a regression."""
    return [m for m in methods if not (m == "nbsvm" and TASKS[dataset] == "regression")]


def plan(dataset: str, tag: str, methods: list[str], files: tuple[Path, Path],
         lm_files: tuple[Path, Path]) -> tuple[Step | None, dict[str, Step]]:
    """The LM fine-tuning on ``lm_files`` (None when no method needs it) and each method's step on ``files``: the
    README's own-CSV commands plus ``data.task``, the parent LM and a run name."""
    data = {"data": "csv", "data.files.train": files[0], "data.files.test": files[1]}
    lm = Step("lm_finetune", f"{tag}-{LM_OF[dataset]}-lm", {"data": "csv", "data.files.train": lm_files[0],
                                                            "data.files.test": lm_files[1],
                                                            "stage.parent": "general-lm"})
    runs = {m: Step("classify" if m == "ulmfit" else m, f"{tag}-{dataset}-{m}",
                    {**data, "data.task": TASKS[dataset], **({"stage.parent": lm.name} if m == "ulmfit" else {})})
            for m in methods_of(dataset, methods)}
    return (lm if "ulmfit" in methods else None), runs


def row_of(home: Path, dataset: str, method: str, stage: str, entry: str, lm: str) -> dict[str, object]:
    """The results row of one run, read from its entry (and its LM's): every column in every row, blank where it
    does not apply, so each table keeps one column order."""
    task, m, lineage = TASKS[dataset], entry_metrics(home, stage, entry), entry_lineage(home, stage, entry)
    first = SCORES[task][0]
    kept = m.get("kept_epoch") or {}
    lm_m = entry_metrics(home, "lm_finetune", lm) if method == "ulmfit" else {}
    row: dict[str, object] = {"date": lineage["created"][:16].replace("T", " "), "entry": entry, "dataset": dataset,
                              "task": task, "method": method, "n_train": m["n_train"], "n_valid": m["n_valid"],
                              "n_test": m["n_test"], f"valid_{first}": round(m[f"valid_{first}"], 4),
                              **{f"test_{k}": round(m[f"test_{k}"], 4) for k in SCORES[task]}}
    if task == "multilabel":
        row["threshold"] = round(m["threshold"], 3)
    row.update(train_s=round(m.get("train_seconds", 0)), precision=lineage.get("precision") or "",
               kept_epoch=(f"phase {kept['phase'] + 1} epoch {kept['epoch'] + 1}" if kept else "last")
               if method == "ulmfit" else "",
               lm=lm if lm_m else "", lm_ppl_before=round(lm_m["valid_perplexity_before"], 1) if lm_m else "",
               lm_ppl_after=round(lm_m["valid_perplexity"], 1) if lm_m else "", lm_epochs=lm_m.get("epochs", ""),
               lm_train_s=round(lm_m["train_seconds"]) if lm_m else "", hardware=hardware())
    return row


COMMON = ("Generated by `python -m experiments.tasks`, one row per run (`date`: when its entry was written), defaults "
          "only: the README's `data=csv` commands plus `data.task`, the LM fine-tuned from the shipped `general-lm`. "
          "`train_s`: the entry's training time (the LM's: `lm_train_s`), wall seconds on a CPU shared with other "
          "runs; `hardware`: the machine.")
TITLES = {"trec50": "Many classes: TREC-50 (ULMFiT vs TF-IDF, NB-SVM)",
          "trec_multilabel": "Multi-label: TREC's coarse and fine label together (ULMFiT vs one-vs-rest TF-IDF, NB-SVM)",
          "imdb_ratings": "Regression: IMDB 1-10 star ratings (ULMFiT vs TF-IDF + ridge)"}
DESCRIPTIONS = {
    "trec50": f"{COMMON} TREC's 50 fine labels: 5,452 training questions (10% of them validate), TREC_10's 500 "
              "test questions; macro-F1 over all 50 labels (those absent from the test questions count 0).",
    "trec_multilabel": f"{COMMON} The same questions labelled `COARSE;COARSE:fine` (56 labels, two per question). "
                       "Micro-F1 counts every question-label decision; exact match, the questions whose predicted "
                       "label set is exactly right; macro-F1 averages the labels that occur in the test questions; "
                       "`threshold`: the one decision threshold, chosen for micro-F1 on the validation questions. "
                       "TF-IDF and NB-SVM: one-vs-rest, C chosen on the same validation questions.",
    "imdb_ratings": f"{COMMON} 1-10 star ratings (from the file names in `*_files.txt.xz`) of a seeded 2,000 of "
                    "IMDB's 25,000 training reviews (200 of them validate; the LM is fine-tuned on them too) and a "
                    "seeded 2,000 of its 25,000 test reviews. RMSE and MAE in stars, Spearman's rank correlation. "
                    "TF-IDF + ridge regression, alpha chosen on the validation reviews."}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs-task"), help="ULMFIT_HOME: store + token cache + CSVs")
    ap.add_argument("--shared", type=Path, default=SHARED_DATA)
    ap.add_argument("--datasets", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--tag", default="tasks", help="prefix of the entries")
    args = ap.parse_args()
    home = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    log = home / "tasks.log"
    shared, table = args.shared.resolve(), {d: f"tasks_{d}" for d in args.datasets}
    for dataset in args.datasets:
        # the LM reads the texts of the dataset it is named after (trec_multilabel's are trec50's)
        lm, runs = plan(dataset, args.tag, args.methods, dataset_files(home, dataset, shared),
                        dataset_files(home, "trec50" if LM_OF[dataset] == "trec" else dataset, shared))
        if lm is not None:
            run_recipe(home, [lm], log)
        for method, step in runs.items():
            if any(r["entry"] == step.name for r in result_rows(table[dataset])):
                continue
            run_recipe(home, [step], log)
            row = row_of(home, dataset, method, step.stage, step.name, lm.name if lm else "")
            print(append_result(table[dataset], row, TITLES[dataset], DESCRIPTIONS[dataset], key="entry"), flush=True)


if __name__ == "__main__":
    main()
