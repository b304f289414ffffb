"""What the general-domain LM is worth: the same ULMFiT recipe on TREC-6 and on IMDB with 1,000 labels, starting
from no pretraining, from a WikiText-2 LM (2M tokens) and from the shipped Wikipedia + Gutenberg LM (20M tokens of
a 101M-token corpus). Writes experiments/results/pretraining_ablation.{csv,md}.

    python -m experiments.pretraining_ablation --home runs/                       # both tasks, every source
    python -m experiments.pretraining_ablation --home runs/ --tasks trec          # TREC-6 only

Sources (the parent of LM fine-tuning; ``awd_lstm_cpu`` throughout):

* ``none``: a random initialisation (``stage.parent=none``);
* ``wikitext2``: experiment=wikitext2_cpu (3 epochs over WikiText-2 train), trained here as ``wt2-cpu-pretrain``
  unless the store has it;
* ``general``: the shipped ``general-lm``.

Tasks (everything but the parent fixed):

* ``trec``: experiments.trec_cpu's recipe (experiment=trec_cpu_lm_finetune, then trec_cpu_classify), seed 42; the
  ``general`` run is the one ``python -m experiments.trec_cpu --pretrain general-lm --tag trec-glm`` reports;
* ``imdb1k``: experiments.imdb_transfer's recipe (experiment=imdb_glm_lm_finetune on IMDB train + unsup, then the
  classifier on a seeded 1,000 labelled reviews, seed 1); its ``general`` run is imdb_transfer's. Each source's IMDB LM
  fine-tuning is the long step (experiments/README.md has the timings).

Resumable: finished entries are reused, and each finished run appends its row at once.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from experiments import imdb_transfer
from experiments.common import (SHARED_DATA, Step, append_result, entry_metrics, hardware, recipe_text, result_rows,
                                run_recipe, stamp)

SOURCES = {"none": "none", "wikitext2": "wt2-cpu-pretrain", "general": "general-lm"}
TASKS = ("trec", "imdb1k")
IMDB_LABELS, IMDB_SEED, TREC_SEED = 1000, 1, 42


def pretrain_step(wikitext: Path) -> Step:
    return Step("pretrain", SOURCES["wikitext2"], {"experiment": "wikitext2_cpu", "data.root": wikitext})


def plan(task: str, source: str, data: Path) -> list[Step]:
    """The task's LM fine-tuning and classifier steps from ``source``."""
    parent = SOURCES[source]
    if task == "trec":
        tag = "trec-glm" if source == "general" else f"pt-{source}-trec"
        return [Step("lm_finetune", f"{tag}-ft", {"experiment": "trec_cpu_lm_finetune", "data.root": data,
                                                  "stage.parent": parent, "seed": TREC_SEED}),
                Step("classify", f"{tag}-clas", {"experiment": "trec_cpu_classify", "data.root": data,
                                                 "stage.parent": f"{tag}-ft", "seed": TREC_SEED})]
    if source == "general":  # imdb_transfer's own LM and 1,000-label run
        return [imdb_transfer.lm_step(data), imdb_transfer.run_plan("ulmfit", IMDB_LABELS, IMDB_SEED, data)]
    lm = f"pt-{source}-imdb-ft"
    clas = imdb_transfer.run_plan("ulmfit", IMDB_LABELS, IMDB_SEED, data)
    return [Step("lm_finetune", lm, {"experiment": "imdb_glm_lm_finetune", "data.root": data, "stage.parent": parent}),
            replace(clas, name=f"pt-{source}-{clas.name}", overrides={**clas.overrides, "stage.parent": lm})]


def finished(task: str, source: str) -> bool:
    return any(r["task"] == task and r["source"] == source for r in result_rows("pretraining_ablation"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs"), help="ULMFIT_HOME: store + token cache")
    ap.add_argument("--trec", default=str(SHARED_DATA / "trec"))
    ap.add_argument("--imdb", default=str(SHARED_DATA / "imdb"))
    ap.add_argument("--wikitext", default=str(SHARED_DATA / "wikitext-2"))
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    args = ap.parse_args()
    home, log = args.home.resolve(), args.home.resolve() / "pretraining_ablation.log"
    home.mkdir(parents=True, exist_ok=True)
    data = {"trec": Path(args.trec).resolve(), "imdb1k": Path(args.imdb).resolve()}

    for task in args.tasks:
        for source in args.sources:
            if finished(task, source):
                continue
            # the WikiText-2 source trains its LM first (once: an existing entry is reused)
            first = [pretrain_step(Path(args.wikitext).resolve())] if source == "wikitext2" else []
            steps = plan(task, source, data[task])
            run_recipe(home, first + steps, log=log)
            lm, clas = (step.name for step in steps)
            f, c = entry_metrics(home, "lm_finetune", lm), entry_metrics(home, "classify", clas)
            row = {"date": stamp(), "task": task, "source": source, "parent": SOURCES[source], "lm_entry": lm,
                   "clas_entry": clas, "lm_ppl_before": round(f["valid_perplexity_before"], 1)
                   if "valid_perplexity_before" in f else "", "lm_ppl_after": round(f["valid_perplexity"], 1),
                   "test_accuracy": round(c["test_accuracy"], 4), "test_error_pct": round(100 * c["test_error_rate"], 2),
                   "n_train": c["n_train"], "lm_train_s": round(f["train_seconds"]),
                   "clas_train_s": round(c["train_seconds"])}
            md = append_result("pretraining_ablation", row, "What pretraining is worth: none / WikiText-2 / general LM", (
                f"Generated by `python -m experiments.pretraining_ablation`; this header was last written on "
                f"{hardware()}.\n\n"
                "The parent of LM fine-tuning is the only difference within a task. Sources: `none` (random "
                f"initialisation), `wikitext2` ({recipe_text('wikitext2_cpu')}, WikiText-2 train), `general` (the "
                "shipped `general-lm`, see general_lm.md). TREC-6: experiments.trec_cpu's recipe, seed 42, test = "
                "TREC_10 (500 questions). imdb1k: experiments.imdb_transfer's IMDB LM recipe from each source, "
                f"then its classifier on a seeded {IMDB_LABELS:,} labelled reviews (seed {IMDB_SEED}), tested on all "
                "25,000 test reviews. lm_ppl_*: the LM's validation perplexity on the task's text before / after "
                "fine-tuning. Times: wall seconds of training."))
            print(md, flush=True)


if __name__ == "__main__":
    main()
