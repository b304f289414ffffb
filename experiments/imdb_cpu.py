"""IMDB with ULMFiT on a 2-core CPU in about 3 hours (2.8 h of training measured): WikiText-2 pretraining ->
LM fine-tuning on IMDB train + unsup (50k + 25k reviews, labels never read) -> classifier with gradual
unfreezing; beside TF-IDF, NB-SVM and the paper. Writes experiments/results/imdb_cpu.{md,csv}.

    python -m experiments.imdb_cpu --home runs/                         # the entries results/imdb_cpu.md reports
    python -m experiments.imdb_cpu --home runs/ --pretrain wt2-cpu-e3   # start from another WikiText-2 entry

The recipe of each step is an experiment config: conf/experiment/imdb_cpu_{pretrain,lm_finetune,classify}.yaml;
this script names the entries and chains them. The default tag, imdb-cpu2, is the recipe the results and README
report (imdb-cpu was the first one, 4M LM tokens at 4e-3 and 1 final epoch); both start from the same pretrain
entry, imdb-cpu-pretrain, whose recipe did not change.

Resumable: every step writes a store entry named ``<tag>-<step>``; a rerun skips the steps whose entry
exists, so an interrupted session continues where it stopped. The results row is written once the
classifier exists; the CPU time of each step is read from its entry (train time) and from the log.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.common import (RESULTS, Step, append_result, entry_config, entry_lineage, entry_metrics,
                                experiment_parser, hardware, recipe_text, run_recipe, stamp)

TAG = "imdb-cpu2"                # the recipe results/imdb_cpu.md and the README report
PRETRAIN = "imdb-cpu-pretrain"   # the pretrain entry both recipes' rows start from
STEPS = ("pretrain", "lm_finetune", "classify", "tfidf", "nbsvm")
PAPER = {"test_error_pct": 4.6, "note": "paper, WT103 + 400/1152/3 model, fwd+bwd ensemble; 5.3 single direction"}
STEP_METRICS = {"pretrain": ["valid_perplexity", "test_perplexity"],
                "lm_finetune": ["valid_perplexity_before", "valid_perplexity", "train_tokens", "vocab_size"],
                "classify": ["test_accuracy", "test_error_rate", "valid_accuracy", "n_train"],
                "tfidf": ["test_accuracy"], "nbsvm": ["test_accuracy"]}


def names(tag: str, pretrain: str) -> dict[str, str]:
    """The store entry of each step."""
    return {"pretrain": pretrain, "lm_finetune": f"{tag}-ft", "classify": f"{tag}-clas",
            "tfidf": f"{tag}-tfidf", "nbsvm": f"{tag}-nbsvm"}


def plan(tag: str, pretrain: str, imdb: Path, wikitext: Path, seed: int) -> list[Step]:
    """The steps, in order; the baselines use the classifier's data split."""
    n = names(tag, pretrain)
    return [Step("pretrain", n["pretrain"], {"experiment": "imdb_cpu_pretrain", "data.root": wikitext, "seed": seed}),
            Step("lm_finetune", n["lm_finetune"], {"experiment": "imdb_cpu_lm_finetune", "data.root": imdb,
                                                   "stage.parent": n["pretrain"], "seed": seed}),
            Step("classify", n["classify"], {"experiment": "imdb_cpu_classify", "data.root": imdb,
                                             "stage.parent": n["lm_finetune"], "seed": seed}),
            *[Step(b, n[b], {"data": "imdb", "data.root": imdb, "seed": seed}) for b in ("tfidf", "nbsvm")]]


def record_step(home: Path, stage: str, name: str) -> None:
    """Its row in imdb_cpu_steps (once): each finished step is kept as soon as it exists, so a long run's parts
    survive a session that ends before the whole recipe does."""
    steps_csv = RESULTS / "imdb_cpu_steps.csv"
    if steps_csv.exists() and f",{stage}/{name}," in steps_csv.read_text():
        return
    m = entry_metrics(home, stage, name)
    env = entry_lineage(home, stage, name)["environment"]
    row = {"date": stamp(), "entry": f"{stage}/{name}",
           "metrics": "; ".join(f"{k}={m[k]:.4g}" for k in STEP_METRICS.get(stage, []) if k in m),
           "train_seconds": m.get("train_seconds", ""), "tokens_per_second": m.get("tokens_per_second", ""),
           "malloc": env.get("malloc", ""), "peak_rss_mb": env.get("peak_rss_mb", ""), "hardware": hardware()}
    append_result("imdb_cpu_steps", row, "IMDB on a 2-core CPU: each step as it finished", (
        "Written by `python -m experiments.imdb_cpu` after every step (`imdb_cpu.md` has the final row). "
        "`train_seconds` is the wall time of the stage's training on this machine, including any time the "
        "machine spent on other jobs. `malloc` / `peak_rss_mb`: the allocator the stage ran with and its peak resident "
        "memory (from the entry's lineage)."))


def parser() -> argparse.ArgumentParser:
    ap = experiment_parser(__doc__, "imdb", TAG, pretrain=PRETRAIN)
    ap.add_argument("--until", choices=("pretrain", "lm_finetune", "classify", "baselines"), default="baselines",
                    help="stop after this step (to fit a session; rerun to continue)")
    return ap


def main() -> None:
    args = parser().parse_args()
    home, log = args.home.resolve(), args.home.resolve() / f"{args.tag}.log"
    home.mkdir(parents=True, exist_ok=True)
    last = STEPS.index("nbsvm" if args.until == "baselines" else args.until)
    for step in plan(args.tag, args.pretrain, Path(args.imdb).resolve(), Path(args.wikitext).resolve(),
                     args.seed)[:last + 1]:
        run_recipe(home, [step], log=log)
        record_step(home, step.stage, step.name)  # as soon as it exists
    if args.until == "baselines":
        report(home, names(args.tag, args.pretrain), args.tag, args.seed)


def report(home: Path, n: dict[str, str], tag: str, seed: int) -> None:
    p, f, c, t, nb = (entry_metrics(home, s, n[s]) for s in STEPS)
    fc, cc = entry_config(home, "lm_finetune", n["lm_finetune"]), entry_config(home, "classify", n["classify"])
    train_s = {s: m["train_seconds"] for s, m in (("pretrain", p), ("lm_finetune", f), ("classify", c))}
    row = {"date": stamp(), "tag": tag, "seed": seed, "pretrain_entry": n["pretrain"],
           "wt2_valid_ppl": round(p["valid_perplexity"], 1),
           "imdb_lm_ppl_before": round(f["valid_perplexity_before"], 1), "imdb_lm_ppl_after": round(f["valid_perplexity"], 1),
           "lm_tokens": f["train_tokens"], "lm_lr": fc.train.lr, "clas_epochs_all_unfrozen": cc.train.epochs,
           "n_train": c["n_train"], "test_accuracy": round(c["test_accuracy"], 4),
           "precision": entry_lineage(home, "classify", n["classify"]).get("precision", ""),  # what auto ran as
           "test_error_pct": round(100 * c["test_error_rate"], 2),
           "tfidf_test_accuracy": round(t["test_accuracy"], 4), "nbsvm_test_accuracy": round(nb["test_accuracy"], 4),
           **{f"{k}_train_s": round(v) for k, v in train_s.items()},
           "total_train_cpu_h": round(sum(train_s.values()) / 3600, 2)}
    md = append_result("imdb_cpu", row, "IMDB with ULMFiT on a 2-core CPU", (
        f"Generated by `python -m experiments.imdb_cpu` on {hardware()}.\n\n"
        "Recipe: `awd_lstm_cpu` (200/576/3) pretrained on WikiText-2 train (the pretrain entry's recipe, "
        f"{recipe_text('imdb_cpu_pretrain')} unless it existed already); LM fine-tuned on IMDB train + unsup "
        f"({recipe_text('imdb_cpu_lm_finetune')}); classifier with gradual unfreezing, discriminative LRs (÷2.6) "
        f"and STLR ({recipe_text('imdb_cpu_classify')}); train.precision=auto runs bf16 where the CPU has bf16 "
        "instructions, else fp32 (the precision column). "
        "The classifier trains on 22,500 labelled reviews (2,500 held out; a seeded 500 of them validate each epoch) and is tested on all "
        "25,000 test reviews; TF-IDF and NB-SVM use the same split. `*_train_s` = wall seconds of each stage's "
        f"training on this machine. Paper: {PAPER['test_error_pct']}% error ({PAPER['note']}). Rows of earlier recipes "
        "differ in the LM tokens / LR and final classifier epochs shown; the recipe text is the latest row's."), key="tag")
    print(md)


if __name__ == "__main__":
    main()
