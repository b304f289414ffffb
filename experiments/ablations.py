"""Ablations of ULMFiT's parts (the paper's tables 6-8) on one budget: full / no discriminative LRs / no STLR /
no gradual unfreezing / no LM fine-tuning / no pretraining. Writes experiments/results/ablations.{md,csv}.

    python -m experiments.ablations --home runs/ --pretrain wt2-cpu-e3              # TREC-6, seed 42
    python -m experiments.ablations --home runs/ --pretrain wt2-cpu-e3 --seeds 1 2  # more seeds, appended

TREC-6 by default: the paper reports it in its ablation tables, and a variant takes minutes on a CPU, so all
six fit one session. ``full`` is the TREC-6 recipe of experiments/trec_cpu.py
(conf/experiment/trec_cpu_{lm_finetune,classify}.yaml); every variant uses its epochs, LRs and batch size and
changes only the named part (``VARIANTS``: overrides on top of that recipe):

* no discriminative LRs: ``train.discr_factor=1`` in LM fine-tuning and classification;
* no STLR: ``train.schedule=constant`` (the same peak LR, flat) in both;
* no gradual unfreezing: every layer trains from the first epoch, for as many epochs as ``full`` trains in all;
* no LM fine-tuning: the classifier starts from the WikiText-2 LM (``stage.parent_stage=pretrain``);
* no pretraining: the LM is fine-tuned from a random initialisation (``stage.parent=none``), then classified.

Resumable: each entry is named ``ablation-<variant>-s<seed>-{ft,clas}``; existing entries are reused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.common import (SHARED_DATA, Step, append_result, entry_metrics, hardware, recipe, recipe_text,
                                run_recipe, stamp)

N_PHASES = 4  # gradual unfreezing phases of the AWD-LSTM classifier (5 layer groups) before `epochs` with all

# variant -> (LM fine-tuning overrides or None to skip it, classifier overrides, which LM the variant shares)
VARIANTS = {
    "full": ({}, {}, "full"),
    "no_discriminative_lr": ({"train.discr_factor": 1}, {"train.discr_factor": 1}, "no_discriminative_lr"),
    "no_stlr": ({"train.schedule": "constant"}, {"train.schedule": "constant"}, "no_stlr"),
    "no_gradual_unfreezing": ({}, {"train.gradual_unfreezing": False}, "full"),
    "no_lm_finetuning": (None, {"stage.parent_stage": "pretrain"}, None),
    "no_pretraining": ({"stage.parent": "none"}, {}, "no_pretraining"),
}


def plan(variant: str, seed: int, pretrain: str, trec: Path) -> list[Step]:
    """The variant's steps: its LM (shared by variants that change only the classifier; none without LM
    fine-tuning), then its classifier."""
    lm_over, clas_over, lm_key = VARIANTS[variant]
    ft, clas = f"ablation-{lm_key}-s{seed}-ft", f"ablation-{variant}-s{seed}-clas"
    steps = []
    if lm_over is not None:
        steps.append(Step("lm_finetune", ft, {"experiment": "trec_cpu_lm_finetune", "data.root": trec,
                                              "stage.parent": pretrain, **lm_over, "seed": seed}))
    if variant == "no_gradual_unfreezing":  # every layer, for as many epochs as `full` trains in all
        clas_over = {**clas_over, "train.epochs": recipe("trec_cpu_classify")["train.epochs"] + N_PHASES}
    steps.append(Step("classify", clas, {"experiment": "trec_cpu_classify", "data.root": trec,
                                         "stage.parent": pretrain if lm_over is None else ft, **clas_over,
                                         "seed": seed}))
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs"))
    ap.add_argument("--trec", default=str(SHARED_DATA / "trec"))
    ap.add_argument("--pretrain", required=True, help="WikiText-2 pretrain entry (python -m experiments.wikitext2_cpu)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args()
    home, log = args.home.resolve(), args.home.resolve() / "ablations.log"
    home.mkdir(parents=True, exist_ok=True)

    for seed in args.seeds:
        for variant in args.variants:
            steps = plan(variant, seed, args.pretrain, Path(args.trec).resolve())
            run_recipe(home, steps, log=log)
            m = {step.stage: entry_metrics(home, step.stage, step.name) for step in steps}
            c, f = m["classify"], m.get("lm_finetune")
            row = {"date": stamp(), "dataset": "trec-6", "variant": variant, "seed": seed,
                   "lm_ppl_after": round(f["valid_perplexity"], 1) if f else "",
                   "valid_error_pct": round(100 * (1 - c["valid_accuracy"]), 2),
                   "test_error_pct": round(100 * c["test_error_rate"], 2),
                   "lm_train_s": round(f["train_seconds"]) if f else 0, "clas_train_s": round(c["train_seconds"])}
            md = append_result("ablations", row, "Ablations of ULMFiT on TREC-6 (CPU)", (
                f"Generated by `python -m experiments.ablations` on {hardware()}.\n\n"
                f"Every variant: WikiText-2 LM `{args.pretrain}` (`awd_lstm_cpu`), LM fine-tuning "
                f"{recipe_text('trec_cpu_lm_finetune')}, classifier {recipe_text('trec_cpu_classify')} (the TREC-6 "
                "recipe of trec_cpu.py); only the named part changes (see the script's docstring). Error rates in %; "
                "test = TREC_10 (500 questions), valid = 10% of the training questions. Times: wall seconds of "
                "training."))
            print(md)


if __name__ == "__main__":
    main()
