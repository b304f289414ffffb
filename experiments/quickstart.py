"""The README's main job, measured: `python -m ulmfit experiment=quickstart` (the shipped LM fine-tuned on the
embedded TREC-6, the classifier, TF-IDF beside it) in a fresh store, its wall time and its table.
Writes experiments/results/quickstart.{md,csv}.

    python -m experiments.quickstart --home /tmp/qs      # an empty home: nothing cached, as on a fresh install
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from omegaconf import DictConfig

from experiments.common import append_result, entry_config, entry_lineage, entry_metrics, hardware, run_ulmfit, stamp
from ulmfit.report import cpu_bf16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs-quickstart"), help="ULMFIT_HOME (use an empty one)")
    ap.add_argument("--experiment", default="quickstart", help="quickstart or quickstart_scratch")
    args = ap.parse_args()
    home, name = args.home.resolve(), f"{args.experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
    seconds = run_ulmfit(f"experiment={args.experiment}", f"run_name={name}", home=home, allocator=False)
    lm, clas, tfidf = (entry_metrics(home, s, f"{name}-{s}") for s in ("lm_finetune", "classify", "tfidf"))
    row = {"date": stamp(), "experiment": args.experiment, "lm_parent": entry_lineage(home, "lm_finetune",
           f"{name}-lm_finetune")["parent"]["name"], "lm_ppl_before": round(lm["valid_perplexity_before"], 1),
           "lm_ppl_after": round(lm["valid_perplexity"], 1), "ulmfit_test_acc": round(clas["test_accuracy"], 4),
           "tfidf_test_acc": round(tfidf["test_accuracy"], 4), "n_test": clas["n_test"],
           "precision": entry_lineage(home, "classify", f"{name}-classify")["precision"],
           "lm_finetune_s": round(lm["train_seconds"]), "classify_s": round(clas["train_seconds"]),
           "wall_min": round(seconds / 60, 2), "cpu": cpu_bf16()}
    lm_cfg, clas_cfg = (entry_config(home, s, f"{name}-{s}") for s in ("lm_finetune", "classify"))
    print(append_result("quickstart", row, TITLE, description(args.experiment, lm_cfg, clas_cfg, clas)))


TITLE = "The quickstart (README command 1), measured"


def description(experiment: str, lm_cfg: DictConfig, clas_cfg: DictConfig, clas: dict) -> str:
    """The results table's header: the recipe as its entries ran it (their configs and the classifier's metrics),
    what the columns mean, and the machine it was last written on."""
    return (f"`python -m experiments.quickstart`; this header was last written on {hardware()}; `cpu` says which "
            "kind of CPU each row ran on (with bf16 instructions, train.precision=auto trains in bf16).\n"
            f"`experiment={experiment}`: the LM `lm_parent` fine-tuned on the {clas['n_train'] + clas['n_valid']:,} "
            f"embedded TREC-6 training questions (at most {lm_cfg.train.epochs} epochs, bs {lm_cfg.train.bs}), then "
            "the classifier with gradual unfreezing, discriminative LRs and STLR (at most "
            f"{clas_cfg.train.epochs} final epochs, bs {clas_cfg.train.bs}); TF-IDF + logistic regression on the same "
            f"split; test = TREC_10 ({clas['n_test']} questions). wall_min: the whole `python -m ulmfit` process in "
            "an empty ULMFIT_HOME (imports, tokenization, training, the three entries), without the pip install.")


if __name__ == "__main__":
    main()
