"""Sample efficiency on IMDB (the paper's figure 3): test accuracy against the number of labelled reviews for
TF-IDF, a classifier trained from scratch, ULMFiT supervised (LM fine-tuned on the labelled texts only) and
ULMFiT semi-supervised (LM fine-tuned on all texts incl. the 50k unlabelled ones). Writes
experiments/results/sample_efficiency.{csv,md,png}.

    python -m experiments.sample_efficiency --home runs/ --pretrain wt2-cpu-e3 --semi-lm imdb-cpu-ft
    python -m experiments.sample_efficiency --home runs/ ... --sizes 100 500 --seeds 1 2 3   # a part of it

``--semi-all`` names experiments.imdb_cpu's classifier (e.g. ``imdb-cpu2-clas``): with all labels ULMFiT
semi-supervised *is* that run (same LM, training set and recipe; its row shows the seed it ran with), so its entry
is reported instead of training it again (42 min).

``--semi-lm`` is the IMDB LM of experiments.imdb_cpu (train + unsup). Labelled subsets are seeded draws
from the 22,500 training reviews left after the 2,500-review validation hold-out (``data.n_train``), the same
for every method; "all" = all 22,500. The classifier recipe is imdb_cpu's (experiment=imdb_cpu_classify) with
more epochs on small sets (``final_epochs``: 10 up to 500 labels, 5 for 1,000, imdb_cpu's 3 above; batch size
``clas_bs``: 16 up to 500, 32 up to 5,000, else 64); the supervised LM (experiment=imdb_cpu_labelled_lm:
imdb_cpu's LM recipe on the labelled texts only) is fine-tuned for ``lm_epochs`` (10 up to 1,000 labels, 3 for
5,000, 1 for all) so that small sets still see a few hundred steps.
The neural runs validate on a seeded 500 of the 2,500 held-out reviews (``data.n_valid`` in both recipes: a
100-label run has up to 14 epochs, and a full validation pass costs more than its training; the training pool and
the full 25,000-review test set are unchanged, so the TF-IDF rows, which need no validation, stay comparable).
Resumable: runs whose store entry exists are not repeated; each finished run appends its CSV row at once.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from experiments.common import (RESULTS, SHARED_DATA, Step, append_result, entry_config, entry_lineage,
                                entry_metrics, entry_parent, hardware, has_entry, recipe, result_rows, run_recipe,
                                stamp)

METHODS = ("tfidf", "scratch", "ulmfit_supervised", "ulmfit_semi_supervised")
ALL = 0  # n_train=0 on the command line: every labelled training review


def final_epochs(n: int) -> int:
    return 10 if 0 < n <= 500 else 5 if 0 < n <= 1000 else recipe("imdb_cpu_classify")["train.epochs"]


def classifier(n: int) -> dict[str, Any]:
    """What a classifier on ``n`` labels changes in experiment=imdb_cpu_classify."""
    return {"train.epochs": final_epochs(n), "train.bs": clas_bs(n)}


def reused_semi_all(home: Path, name: str, semi_lm: str, n: int) -> str:
    """Check that ``name`` (experiments.imdb_cpu's classifier) is the run this script would make on ``n`` labels
    from ``semi_lm`` (the values experiment=imdb_cpu_classify sets, and ``classifier(n)``), and return it."""
    if not has_entry(home, "classify", name):
        sys.exit(f"--semi-all {name}: no classify entry of that name in {home / 'store'}; run "
                 "`python -m experiments.imdb_cpu` first or leave --semi-all out to train it here.")
    cfg = entry_config(home, "classify", name)
    # train.precision=auto is not compared: it picks bf16 or fp32 by machine, and the lineage records which ran
    expected = {**recipe("imdb_cpu_classify"), "data.n_train": n or None, **classifier(n)}
    expected.pop("train.precision", None)
    differ = [f"{key}={OmegaConf.select(cfg, key)} (expected {value})" for key, value in expected.items()
              if OmegaConf.select(cfg, key) != value]
    if (parent := entry_parent(home, "classify", name)) != semi_lm:
        differ.append(f"parent {parent} (expected {semi_lm})")
    if differ:
        sys.exit(f"--semi-all {name} is not this script's all-label ULMFiT run: {'; '.join(differ)}.")
    return name


def clas_bs(n: int) -> int:
    """Smaller batches on small sets, so that each unfreezing phase still has several steps."""
    return 16 if 0 < n <= 500 else 32 if 0 < n <= 5000 else 64


def lm_epochs(n: int) -> int:
    return 10 if 0 < n <= 1000 else 3 if 0 < n <= 5000 else 1


def _accuracies(rows: list[dict[str, str]]) -> dict[tuple[str, int], list[float]]:
    """Test accuracies (%) of every run, by (method, number of labels)."""
    accs: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in rows:
        accs[r["method"], int(r["n_train"])].append(100 * float(r["test_accuracy"]))
    return accs


def summary_table(rows: list[dict[str, str]], methods: tuple[str, ...] = METHODS) -> str:
    """Test accuracy (%) per method (in the order of ``methods``) and number of labels: the mean over seeds, with
    min-max and the number of seeds where there are several; "-" where nothing has run."""
    by: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (method, n), accs in _accuracies(rows).items():
        by[method][n] = accs
    sizes = sorted({n for points in by.values() for n in points})

    def cell(accs: list[float]) -> str:
        if not accs:
            return "-"
        mean = f"{sum(accs) / len(accs):.1f}"
        return mean if len(accs) == 1 else f"{mean} ({min(accs):.1f}-{max(accs):.1f}, {len(accs)} seeds)"
    lines = ["| method | " + " | ".join(f"{n:,}" for n in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(cell(by[m].get(n, [])) for n in sizes) + " |" for m in methods if m in by]
    return "\n".join(lines) + "\n"


# The CPU-recipe targets of the issue that asked for this study (IMDB test accuracy, %, by number of labels;
# "25k" is every labelled training review, here the 22,500 left after the validation hold-out).
TARGETS = {100: 75.0, 1000: 86.0, 22500: 91.5}


def targets_table(rows: list[dict[str, str]]) -> str:
    """The best ULMFiT variant (mean over seeds) at each target size, against its target and TF-IDF."""
    means: dict[tuple[str, int], float] = {}
    for (method, n), accs in _accuracies(rows).items():
        means[method, n] = sum(accs) / len(accs)
    lines = ["| labels | target | best ULMFiT | variant | vs target | TF-IDF |", "|---|---|---|---|---|---|"]
    for n, target in TARGETS.items():
        ulmfit = [(means[m, n], m) for m in METHODS if m.startswith("ulmfit") and (m, n) in means]
        if not ulmfit:
            continue
        best, variant = max(ulmfit)
        verdict = "met" if best >= target else f"missed by {target - best:.1f}"
        tfidf = f"{means['tfidf', n]:.1f}" if ("tfidf", n) in means else "-"
        lines.append(f"| {n:,} | {target:.1f} | {best:.1f} | {variant} | {verdict} | {tfidf} |")
    return "\n".join(lines) + "\n"


def write_summary(csv_path: Path | None = None) -> Path:
    """experiments/results/sample_efficiency_summary.md from the CSV of every finished run."""
    csv_path = csv_path or RESULTS / "sample_efficiency.csv"
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    out = csv_path.with_name("sample_efficiency_summary.md")
    out.write_text("# Sample efficiency on IMDB: test accuracy (%) by number of labelled reviews\n\n"
                   "Summarised from `sample_efficiency.csv` (one row per run, with its date, seed and time) by "
                   "`python -m experiments.sample_efficiency --summary`; 25,000 test reviews.\n\n" + summary_table(rows)
                   + "\n## Against the CPU-recipe targets\n\nMean over seeds of the better ULMFiT variant; "
                   "all labels = the 22,500 training reviews left after the validation hold-out.\n\n"
                   + targets_table(rows))
    return out


def plan(method: str, n: int, seed: int, imdb: Path, pretrain: str, semi_lm: str) -> list[Step]:
    """The steps of one run: ``method`` on ``n`` labelled reviews (0: all) drawn with ``seed``; the last step is
    the one reported (ULMFiT supervised fine-tunes its own LM first)."""
    tag = f"se-n{n or 'all'}-s{seed}"
    subset = {"data.root": imdb, "data.n_train": n or None, "seed": seed, "data_seed": seed}
    if method == "tfidf":
        return [Step("tfidf", f"{tag}-tfidf", {"data": "imdb", **subset})]
    steps = []
    if method == "ulmfit_supervised":
        steps.append(Step("lm_finetune", f"{tag}-lm", {"experiment": "imdb_cpu_labelled_lm", **subset,
                                                       "stage.parent": pretrain, "train.epochs": lm_epochs(n)}))
    parent = {"scratch": {"stage.parent_stage": "none"}, "ulmfit_semi_supervised": {"stage.parent": semi_lm},
              "ulmfit_supervised": {"stage.parent": f"{tag}-lm"}}[method]
    steps.append(Step("classify", f"{tag}-{method}", {"experiment": "imdb_cpu_classify", **subset, **parent,
                                                      **classifier(n)}))
    return steps


def done(name: str) -> bool:
    return any(r["entry"] == name for r in result_rows("sample_efficiency"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs"))
    ap.add_argument("--imdb", default=str(SHARED_DATA / "imdb"))
    ap.add_argument("--pretrain", help="WikiText-2 pretrain entry (required unless --summary)")
    ap.add_argument("--semi-lm", help="lm_finetune entry trained on IMDB train+unsup (experiments.imdb_cpu)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000, 5000, ALL])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds for sizes <= 1000")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--semi-all", help="experiments.imdb_cpu's classify entry, reported as the all-label "
                    "semi-supervised run")
    ap.add_argument("--summary", action="store_true", help="only rewrite the summary table and the plot from the CSV")
    args = ap.parse_args()
    if args.summary:
        report()
        return
    if not (args.pretrain and args.semi_lm):
        ap.error("--pretrain and --semi-lm are required to run (only --summary works without them)")
    home, log = args.home.resolve(), args.home.resolve() / "sample_efficiency.log"
    home.mkdir(parents=True, exist_ok=True)
    imdb = Path(args.imdb).resolve()

    for n in args.sizes:
        for seed in (args.seeds if 0 < n <= 1000 else args.seeds[:1]):
            for method in args.methods:
                if method == "ulmfit_semi_supervised" and n == ALL and args.semi_all:
                    name, stage = reused_semi_all(home, args.semi_all, args.semi_lm, n), "classify"
                    steps = []
                else:
                    steps = plan(method, n, seed, imdb, args.pretrain, args.semi_lm)
                    stage, name = steps[-1].stage, steps[-1].name
                if done(name):
                    continue
                run_recipe(home, steps, log=log)
                m = entry_metrics(home, stage, name)
                row = {"date": stamp(), "entry": name, "method": method, "n_train": m["n_train"],
                       "seed": entry_config(home, stage, name)["seed"],
                       "test_accuracy": round(m["test_accuracy"], 4), "train_s": round(m["train_seconds"]),
                       "lm_entry": entry_parent(home, stage, name),
                       "precision": entry_lineage(home, stage, name).get("precision", "")}
                append_result("sample_efficiency", row, "Sample efficiency on IMDB (CPU)", (
                    "Generated by `python -m experiments.sample_efficiency`, one row per run, appended across "
                    "sessions so rows may come from different machines (the precision column says bf16 or fp32); "
                    f"this header was last written on {hardware()}.\n\n"
                    f"Pretrained LM `{args.pretrain}`, semi-supervised LM `{args.semi_lm}`; recipes in the script's "
                    "docstring. Test accuracy on all 25,000 IMDB test reviews; train_s = wall seconds of the final "
                    "stage's training; lm_entry = the fine-tuned LM the classifier started from; precision = what "
                    "train.precision=auto ran as (empty for TF-IDF, and for neural rows written before it was recorded: "
                    "those ran bf16). "
                    "Plot: sample_efficiency.png (`python -m experiments.plots`)."), key="entry")
    report()


def report() -> None:
    from experiments.plots import sample_efficiency_plot
    print("summary:", write_summary())
    print("plot:", sample_efficiency_plot())


if __name__ == "__main__":
    main()
