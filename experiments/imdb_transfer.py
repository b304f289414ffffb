"""IMDB from the shipped general-domain LM: semi-supervised ULMFiT against TF-IDF and NB-SVM at 100, 1,000 and
every labelled review, on identical splits. Writes experiments/results/imdb_transfer.{csv,md}.

    python -m experiments.imdb_transfer --home runs/                          # 100, 1,000 and all labels, seed 1
    python -m experiments.imdb_transfer --home runs/ --sizes 100 1000 --seeds 1 2 3   # more seeds where cheap

Step 1 fine-tunes the shipped LM (``general-lm``) on IMDB train + unsup (experiment=imdb_glm_lm_finetune: all
20.3M tokens, one epoch; labels never read) into the entry ``imdb-glm-ft``. Then, for each number of labels and
seed, the three methods train on the same seeded draw of labelled reviews (``data.n_train`` and ``seed``; "all"
= the 22,500 left after the 2,500-review validation hold-out) and are tested on all 25,000 test reviews:

* ``ulmfit``: the classifier of experiment=imdb_cpu_classify on ``imdb-glm-ft`` (gradual unfreezing,
  discriminative LRs, STLR), with experiments.sample_efficiency's epochs and batch size for small sets;
* ``tfidf`` and ``nbsvm``: the bag-of-n-grams baselines (stages ``tfidf``, ``nbsvm``).

Resumable: each run is a store entry ``glm-n<labels>-s<seed>-<method>``; finished runs are not repeated and each
appends its CSV row as soon as it ends (the LM fine-tuning itself checkpoints every 20 minutes).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from experiments import common
from experiments.common import (SHARED_DATA, Step, append_result, entry_lineage, entry_metrics, hardware,
                                recipe_text, result_rows, run_recipe, stamp)
from experiments.sample_efficiency import ALL, classifier

LM = "imdb-lm"
PARENT = "general-lm"
METHODS = ("tfidf", "nbsvm", "probe", "ulmfit")
# The targets (test accuracy %, by number of labels; "all" = the 22,500 after the hold-out).
TARGETS = {100: 80.0, 1000: 87.0, 22500: 92.0}


def lm_step(imdb: Path) -> Step:
    return Step("lm_finetune", LM, {"experiment": "imdb_glm_lm_finetune", "data.root": imdb, "stage.parent": PARENT})


def run_plan(method: str, n: int, seed: int, imdb: Path, n_test: int | None = None) -> Step:
    """The step of ``method`` on ``n`` labelled reviews (0: all; validation included) drawn with
    ``data_seed=seed``; the initialisation seed stays the default, so the spread across seeds is the spread across
    label draws. ``n_test``: score a fixed seeded subset of the test reviews (all when None)."""
    name = f"glm-n{n or 'all'}-s{seed}-{method}" + (f"-t{n_test}" if n_test else "")
    subset = {"data.root": imdb, "data.n_train": n or None, "data_seed": seed, "data.n_test": n_test or None}
    if method == "ulmfit":
        return Step("classify", name, {"experiment": "imdb_cpu_classify", **subset, "stage.parent": LM,
                                       **classifier(n)})
    if method == "probe":
        return Step("probe", name, {"data": "imdb", **subset, "stage.parent": LM})
    return Step(method, name, {"data": "imdb", **subset})


def finished(name: str) -> bool:
    return any(r["entry"] == name for r in result_rows("imdb_transfer"))


ALL_LABELS = 22500  # "all": 25,000 labelled reviews, 2,500 of them validation (the "22,500 labels")


def _accuracies(rows: list[dict[str, str]]) -> dict[tuple[str, int], list[float]]:
    """Test accuracies (%) by (method, labels) over the label draws; rows from before the label budget included
    its validation (no ``labels`` column) are left out."""
    acc: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        if r.get("labels"):
            n = ALL_LABELS if r["labels"] == "all" else int(r["labels"])
            acc.setdefault((r["method"], n), []).append(100 * float(r["test_accuracy"]))
    return acc


def _cell(accs: list[float]) -> str:
    if not accs:
        return "-"
    if len(accs) == 1:
        return f"{accs[0]:.1f}"
    return f"{statistics.mean(accs):.1f} ± {statistics.stdev(accs):.1f} ({len(accs)} draws)"


def summary_table(rows: list[dict[str, str]]) -> str:
    """Test accuracy (%) per method and number of labels: mean ± sd over the label draws."""
    acc = _accuracies(rows)
    sizes = sorted({n for _, n in acc})
    lines = ["| method | " + " | ".join("all" if n == ALL_LABELS else f"{n:,}" for n in sizes) + " |",
             "|---" * (len(sizes) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(_cell(acc.get((m, n), [])) for n in sizes) + " |"
              for m in METHODS if any((m, n) in acc for n in sizes)]
    return "\n".join(lines) + "\n"


def targets_table(rows: list[dict[str, str]]) -> str:
    """ULMFiT's mean accuracy at each target size against the target and both baselines."""
    mean = {k: statistics.mean(v) for k, v in _accuracies(rows).items()}
    lines = ["| labels | target | ULMFiT | TF-IDF | NB-SVM | verdict |", "|---|---|---|---|---|---|"]
    for n, target in TARGETS.items():
        if ("ulmfit", n) not in mean:
            continue
        u = mean["ulmfit", n]
        base = [mean.get((b, n)) for b in ("tfidf", "nbsvm")]
        beats = all(b is not None and u > b for b in base)
        verdict = ("target met" if u >= target else f"target missed by {target - u:.1f}") + \
            ("; above both baselines" if beats else "; not above both baselines")
        lines.append(f"| {'all' if n == ALL_LABELS else f'{n:,}'} | {target:.1f} | {u:.1f} | "
                     + " | ".join("-" if b is None else f"{b:.1f}" for b in base) + f" | {verdict} |")
    return "\n".join(lines) + "\n"


def write_summary() -> Path:
    rows = result_rows("imdb_transfer")
    lm = entry_summary(rows)
    tests = sorted({r.get("n_test", "") for r in rows if r.get("labels")})
    out = common.RESULTS / "imdb_transfer_summary.md"
    out.write_text("# IMDB from the shipped general LM: test accuracy (%) by number of labelled reviews\n\n"
                   "Summarised from `imdb_transfer.csv` (one row per run, with its date, label draw and time) by "
                   "`python -m experiments.imdb_transfer`. Labels include the validation that chooses the "
                   "classifier's epoch and the baselines' C (10% of them); every method sees the same draw "
                   f"(`data_seed`). Test reviews scored: {', '.join(tests)}. {lm}\n\n" + summary_table(rows)
                   + "\n## Against the targets\n\nMean over label draws.\n\n" + targets_table(rows))
    return out


def entry_summary(rows: list[dict[str, str]]) -> str:
    lm = [r for r in rows if r.get("lm_ppl_after")]
    if not lm:
        return ""
    r = lm[-1]
    return (f"The IMDB LM `{LM}` (from `{PARENT}`): validation perplexity {r['lm_ppl_before']} before and "
            f"{r['lm_ppl_after']} after fine-tuning, {int(r['lm_train_s']) / 3600:.2f} h.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs"), help="ULMFIT_HOME: store + token cache")
    ap.add_argument("--imdb", default=str(SHARED_DATA / "imdb"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, ALL], help="labels per run (0: all)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1], help="seeds (all labels: the first only)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--n-test", type=int, default=None, help="score every method on a fixed seeded subset of this "
                    "many test reviews (default: all 25,000)")
    args = ap.parse_args()
    home, log = args.home.resolve(), args.home.resolve() / "imdb_transfer.log"
    home.mkdir(parents=True, exist_ok=True)
    imdb = Path(args.imdb).resolve()

    lm = {}
    if {"ulmfit", "probe"} & set(args.methods):  # the baselines need no LM (and can run while it trains)
        step = lm_step(imdb)
        run_recipe(home, [step], log=log)
        lm = entry_metrics(home, step.stage, step.name)
    for n in args.sizes:
        for seed in (args.seeds if n != ALL else args.seeds[:1]):
            for method in args.methods:
                step = run_plan(method, n, seed, imdb, args.n_test)
                stage, name = step.stage, step.name
                if finished(name):
                    continue
                run_recipe(home, [step], log=log)
                m = entry_metrics(home, stage, name)
                row = {"date": stamp(), "entry": name, "method": method, "labels": n or "all",
                       "n_train": m["n_train"], "n_valid": m["n_valid"], "n_test": m["n_test"], "data_seed": seed,
                       "test_accuracy": round(m["test_accuracy"], 4), "train_s": round(m.get("train_seconds", 0)),
                       "precision": entry_lineage(home, stage, name).get("precision", ""),
                       **({"lm_ppl_before": round(lm["valid_perplexity_before"], 1),
                           "lm_ppl_after": round(lm["valid_perplexity"], 1), "lm_train_s": round(lm["train_seconds"]),
                           "lm_tokens_per_s": round(lm["tokens_per_second"])} if method in ("ulmfit", "probe") else {})}
                append_result("imdb_transfer", row, "IMDB from the shipped general LM (CPU)", (
                    f"Generated by `python -m experiments.imdb_transfer`, one row per run; this header was last "
                    f"written on {hardware()}.\n\n"
                    f"LM: the shipped `{PARENT}` fine-tuned on IMDB train + unsup, {recipe_text('imdb_glm_lm_finetune')}"
                    f" (plus what it extends, {recipe_text('imdb_cpu_lm_finetune')}); ULMFiT classifier: "
                    f"{recipe_text('imdb_cpu_classify')} with experiments.sample_efficiency's epochs and batch size by "
                    "number of labels. Test accuracy on all 25,000 test reviews; train_s = wall seconds of the run's "
                    "training (the LM's in lm_train_s); precision = what train.precision=auto ran as (empty for the "
                    "baselines). Summary against the targets: imdb_transfer_summary.md."), key="entry")
                print(write_summary().read_text(), flush=True)


if __name__ == "__main__":
    main()
