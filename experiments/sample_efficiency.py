"""Sample efficiency on IMDB (the paper's figure 3): test accuracy against the number of labelled reviews for
TF-IDF, a classifier trained from scratch, ULMFiT supervised (LM fine-tuned on the labelled texts only) and
ULMFiT semi-supervised (LM fine-tuned on all texts incl. the 50k unlabelled ones). Writes
experiments/results/sample_efficiency.{csv,md,png}.

    python experiments/sample_efficiency.py --home runs/ --pretrain wt2-cpu-e3 --semi-lm imdb-cpu-ft
    python experiments/sample_efficiency.py --home runs/ ... --sizes 100 500 --seeds 1 2 3   # a part of it

``--semi-all`` names imdb_cpu.py's classifier (e.g. ``imdb-cpu2-clas``): with all labels ULMFiT semi-supervised
*is* that run (same LM, training set and recipe; its row shows the seed it ran with), so its entry is reported
instead of training it again (42 min).

``--semi-lm`` is the IMDB LM of experiments/imdb_cpu.py (train + unsup). Labelled subsets are seeded draws
from the 22,500 training reviews left after the 2,500-review validation hold-out (``data.n_train``), the same
for every method; "all" = all 22,500. The classifier recipe is imdb_cpu.py's with more epochs on small sets
(``final_epochs``: 10 up to 500 labels, 5 for 1,000, imdb_cpu's 3 above; batch size ``clas_bs``: 16 up to 500,
32 up to 5,000, else 64) and the supervised LM is fine-tuned for ``lm_epochs`` (10 up to 1,000 labels, 3 for
5,000, 1 for all) so that small sets still see a few hundred steps.
The neural runs validate on a seeded 500 of the 2,500 held-out reviews (imdb_cpu's ``VALIDATION``: a 100-label run
has up to 14 epochs, and a full validation pass costs more than its training; the training pool and the full
25,000-review test set are unchanged, so the TF-IDF rows, which need no validation, stay comparable).
Resumable: runs whose store entry exists are not repeated; each finished run appends its CSV row at once.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

from common import (RESULTS, SHARED_DATA, append_result, entry_config, entry_lineage, entry_metrics, entry_parent,
                    hardware, has_entry, stamp, ulmfit)
from imdb_cpu import CLASSIFY, FINETUNE, PRECISION, VALIDATION

METHODS = ("tfidf", "scratch", "ulmfit_supervised", "ulmfit_semi_supervised")
ALL = 0  # n_train=0 on the command line: every labelled training review
CLASSIFY_EPOCHS = int(next(o.split("=")[1] for o in CLASSIFY if o.startswith("train.epochs=")))


def final_epochs(n: int) -> int:
    return 10 if 0 < n <= 500 else 5 if 0 < n <= 1000 else CLASSIFY_EPOCHS


def reused_semi_all(home: Path, name: str, semi_lm: str, recipe: list[str]) -> str:
    """Check that ``name`` (imdb_cpu.py's classifier) is the run this script would make with ``recipe`` (its
    overrides) from ``semi_lm``, and return it."""
    if not has_entry(home, "classify", name):
        sys.exit(f"--semi-all {name}: no classify entry of that name in {home / 'store'}; run experiments/imdb_cpu.py "
                 "first or leave --semi-all out to train it here.")
    cfg = OmegaConf.create(entry_config(home, "classify", name))
    overrides = (o.split("=", 1) for o in recipe if not o.startswith("seed="))
    differ = [f"{key}={OmegaConf.select(cfg, key)} (expected {value})" for key, value in overrides
              if OmegaConf.select(cfg, key) != OmegaConf.create(f"v: {value}").v]  # parsed as Hydra parses it
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


def summary_table(rows: list[dict[str, str]]) -> str:
    """Test accuracy (%) per method and number of labels: the mean over seeds, with min-max and the number of
    seeds where there are several; "-" where nothing has run."""
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
    lines += [f"| {m} | " + " | ".join(cell(by[m].get(n, [])) for n in sizes) + " |" for m in METHODS if m in by]
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
                   "`python experiments/sample_efficiency.py --summary`; 25,000 test reviews.\n\n" + summary_table(rows)
                   + "\n## Against the CPU-recipe targets\n\nMean over seeds of the better ULMFiT variant; "
                   "all labels = the 22,500 training reviews left after the validation hold-out.\n\n"
                   + targets_table(rows))
    return out


def done(name: str) -> bool:
    path = RESULTS / "sample_efficiency.csv"
    if not path.exists():
        return False
    with open(path) as fh:
        return any(r["entry"] == name for r in csv.DictReader(fh))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs"))
    ap.add_argument("--imdb", default=str(SHARED_DATA / "imdb"))
    ap.add_argument("--pretrain", help="WikiText-2 pretrain entry (required unless --summary)")
    ap.add_argument("--semi-lm", help="lm_finetune entry trained on IMDB train+unsup (imdb_cpu.py)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000, 5000, ALL])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds for sizes <= 1000")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--semi-all", help="imdb_cpu.py's classify entry, reported as the all-label semi-supervised run")
    ap.add_argument("--summary", action="store_true", help="only rewrite the summary table and the plot from the CSV")
    args = ap.parse_args()
    if args.summary:
        report()
        return
    if not (args.pretrain and args.semi_lm):
        ap.error("--pretrain and --semi-lm are required to run (only --summary works without them)")
    home, log = args.home.resolve(), args.home.resolve() / "sample_efficiency.log"
    home.mkdir(parents=True, exist_ok=True)
    data = ["data=imdb", f"data.root={Path(args.imdb).resolve()}"]
    clas_recipe = [o for o in CLASSIFY if not o.startswith(("train.epochs=", "train.bs="))]

    def classifier(n: int) -> list[str]:
        return [*clas_recipe, *VALIDATION, f"train.epochs={final_epochs(n)}", f"train.bs={clas_bs(n)}"]
    ft_recipe = [o for o in FINETUNE if not o.startswith(("train.epochs=", "stage.lm_parts="))]

    for n in args.sizes:
        for seed in (args.seeds if 0 < n <= 1000 else args.seeds[:1]):
            subset = [f"data.n_train={n or 'null'}", f"seed={seed}"]
            tag = f"se-n{n or 'all'}-s{seed}"
            for method in args.methods:
                name = f"{tag}-{method}"
                stage = "tfidf" if method == "tfidf" else "classify"
                if method == "ulmfit_semi_supervised" and n == ALL and args.semi_all:
                    name = reused_semi_all(home, args.semi_all, args.semi_lm, [*subset, *classifier(n)])
                if done(name):
                    continue
                if not has_entry(home, stage, name):
                    if method == "tfidf":
                        ulmfit("stage=tfidf", *data, *subset, f"run_name={name}", home=home, log=log)
                    else:
                        parent = {"scratch": ["stage.parent_stage=none"],
                                  "ulmfit_semi_supervised": [f"stage.parent={args.semi_lm}"],
                                  "ulmfit_supervised": [f"stage.parent={tag}-lm"]}[method]
                        if method == "ulmfit_supervised" and not has_entry(home, "lm_finetune", f"{tag}-lm"):
                            ulmfit("stage=lm_finetune", *data, *subset, f"stage.parent={args.pretrain}",
                                   "stage.lm_parts=[train]", "stage.lm_only_labelled=true", *ft_recipe, *VALIDATION,
                                   f"train.epochs={lm_epochs(n)}", *PRECISION, f"run_name={tag}-lm", home=home, log=log)
                        ulmfit("stage=classify", *data, *subset, *parent, *classifier(n), *PRECISION,
                               f"run_name={name}", home=home, log=log)
                m = entry_metrics(home, stage, name)
                row = {"date": stamp(), "entry": name, "method": method, "n_train": m["n_train"],
                       "seed": entry_config(home, stage, name)["seed"],
                       "test_accuracy": round(m["test_accuracy"], 4), "train_s": round(m["train_seconds"]),
                       "lm_entry": entry_parent(home, stage, name),
                       "precision": entry_lineage(home, stage, name).get("precision", "")}
                append_result("sample_efficiency", row, "Sample efficiency on IMDB (CPU)", (
                    "Generated by `python experiments/sample_efficiency.py`, one row per run, appended across "
                    "sessions so rows may come from different machines (the precision column says bf16 or fp32); "
                    f"this header was last written on {hardware()}.\n\n"
                    f"Pretrained LM `{args.pretrain}`, semi-supervised LM `{args.semi_lm}`; recipes in the script's "
                    "docstring. Test accuracy on all 25,000 IMDB test reviews; train_s = wall seconds of the final "
                    "stage's training; lm_entry = the fine-tuned LM the classifier started from; precision = what "
                    "train.precision=auto ran as (empty for TF-IDF, and for neural rows written before it was recorded: "
                    "those ran bf16). "
                    "Plot: sample_efficiency.png (`python experiments/plots.py`)."), key="entry")
    report()


def report() -> None:
    from plots import sample_efficiency_plot
    print("summary:", write_summary())
    print("plot:", sample_efficiency_plot())


if __name__ == "__main__":
    main()
