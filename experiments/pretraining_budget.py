"""Is more pretraining the lever? The shipped general LM after one pass over 20M tokens against the same LM after a
second pass over another 20M, measured where the encoder was found to limit: perplexity on the corpus's own
valid/test splits and on WikiText-2 test, the linear probe and the fine-tuned classifier on short sentiment texts
(own_csv's ``sentiment_dev``, the README's own-CSV defaults), and TREC-6 (experiments.trec_cpu's recipe, seed 42).
Writes experiments/results/pretraining_budget.{md,csv}.

    python -m experiments.pretraining_budget --home runs/

Step 1 continues ``general-lm`` on a second seeded 20M-token subset (experiment=general_lm_cpu_pass2: one
epoch, the first pass's one-cycle LR 1e-2 and drop_mult 0.1, no discriminative LRs) into the LM fine-tuning entry
``general-lm-2pass``, and exports it in fp16 as a pretrain entry of the same name in this home's store (the form of
the shipped one), so that both LMs are parents the same way. Then, for each LM, the same downstream steps. Each
finished LM's row is appended as soon as it is measured; every step is a store entry, so a rerun continues.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments import own_csv, trec_cpu
from experiments.common import (SHARED_DATA, Step, append_result, entry_metrics, hardware, result_rows,
                                run_recipe, run_ulmfit, stamp)

SHIPPED = "general-lm"
SECOND_PASS = "general-lm-2pass"
SEED = 42  # the classifiers' seed (TREC-6, as in trec_ensemble's first member)


def second_pass(corpus: Path) -> Step:
    return Step("lm_finetune", SECOND_PASS, {"experiment": "general_lm_cpu_pass2", "data.root": corpus})


def export_as_pretrain(home: Path) -> None:
    """``lm_finetune/general-lm-2pass`` as ``pretrain/general-lm-2pass`` (fp16, like the shipped LM)."""
    dest = home / "store" / "pretrain"
    if not (dest / SECOND_PASS).exists():
        from ulmfit.shipped import export
        export(home / "store" / "lm_finetune" / SECOND_PASS, SECOND_PASS, dest=dest)


def perplexities(home: Path, model: str, corpus: Path, wikitext: Path) -> dict[str, float]:
    """Perplexity of ``model`` (``<stage>/<name>``) on the corpus's valid and test splits and on WikiText-2 test,
    scored in fp32 for both LMs."""
    figures = {}
    for data, root, parts in (("wiki_gutenberg", corpus, "[valid,test]"), ("wikitext2", wikitext, "[test]")):
        out = home / "evaluations" / f"perplexity-{model.replace('/', '-')}-{data}.json"
        if not out.exists():
            run_ulmfit("stage=perplexity", f"stage.model={model}", f"data={data}", f"data.root={root}",
                       f"stage.parts={parts}", f"stage.output={out}", "train.precision=fp32", home=home)
        report = json.loads(out.read_text())
        for part in parts.strip("[]").split(","):
            figures[f"{'wt2_' if data == 'wikitext2' else ''}{part}_ppl"] = round(report[part]["perplexity"], 1)
    return figures


def downstream(lm: str, shared: Path, home: Path) -> dict[str, Step]:
    """The steps that measure ``lm`` (a pretrain entry): sentiment_dev's LM fine-tuning, probe and classifier with
    own_csv's defaults, and TREC-6's LM fine-tuning and classifier with trec_cpu's recipe."""
    train, test = own_csv.dataset_files(home, "sentiment_dev", shared)
    tag = f"pb-{lm}"
    sent_lm, sent = own_csv.plan("sentiment_dev", tag, None, ["probe", "ulmfit"], [f"lm.stage.parent={lm}"],
                                 train, test)
    _, trec_lm, trec_clas = trec_cpu.plan(f"{tag}-trec", lm, shared / "trec", shared / "wikitext-2", SEED)
    return {"sentiment_lm": sent_lm, "sentiment_probe": sent["probe"], "sentiment_ulmfit": sent["ulmfit"],
            "trec_lm": trec_lm, "trec_ulmfit": trec_clas}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs"), help="ULMFIT_HOME: store + token cache")
    ap.add_argument("--shared", type=Path, default=SHARED_DATA)
    ap.add_argument("--lms", nargs="+", default=[SHIPPED, SECOND_PASS], choices=(SHIPPED, SECOND_PASS))
    args = ap.parse_args()
    home, shared = args.home.resolve(), args.shared.resolve()
    home.mkdir(parents=True, exist_ok=True)
    log = home / "pretraining_budget.log"
    corpus = shared / "wiki-gutenberg"
    for lm in args.lms:
        if any(r["lm"] == lm for r in result_rows("pretraining_budget")):
            continue
        row = {"date": stamp(), "lm": lm, "passes": 1 if lm == SHIPPED else 2, "pretrain_tokens": 20_000_000}
        if lm == SECOND_PASS:
            run_recipe(home, [second_pass(corpus)], log=log)
            export_as_pretrain(home)
            m = entry_metrics(home, "lm_finetune", SECOND_PASS)
            row.update(pretrain_tokens=20_000_000 + m["train_tokens"], pass_h=round(m["train_seconds"] / 3600, 2),
                       pass_tokens_per_s=round(m["tokens_per_second"]))
        row.update(perplexities(home, f"pretrain/{lm}", corpus, shared / "wikitext-2"))
        steps = downstream(lm, shared, home)
        run_recipe(home, list(steps.values()), log=log)
        got = {key: entry_metrics(home, step.stage, step.name) for key, step in steps.items()}
        row.update(sentiment_lm_ppl_before=round(got["sentiment_lm"]["valid_perplexity_before"], 1),
                   sentiment_lm_ppl_after=round(got["sentiment_lm"]["valid_perplexity"], 1),
                   sentiment_probe_valid=round(got["sentiment_probe"]["valid_accuracy"], 4),
                   sentiment_probe_test=round(got["sentiment_probe"]["test_accuracy"], 4),
                   sentiment_ulmfit_valid=round(got["sentiment_ulmfit"]["valid_accuracy"], 4),
                   sentiment_ulmfit_test=round(got["sentiment_ulmfit"]["test_accuracy"], 4),
                   trec_lm_ppl_after=round(got["trec_lm"]["valid_perplexity"], 1),
                   trec_ulmfit_valid=round(got["trec_ulmfit"]["valid_accuracy"], 4),
                   trec_error_pct=round(100 * got["trec_ulmfit"]["test_error_rate"], 2),
                   downstream_train_s=round(sum(m.get("train_seconds", 0) for m in got.values())),
                   hardware=hardware())
        print(append_result("pretraining_budget", row, "More pretraining: the general LM after one and two passes", (
            "Generated by `python -m experiments.pretraining_budget`, one row per LM; each row's machine in its "
            "`hardware` column. `general-lm`: the shipped LM (one pass over a seeded 20M-token subset of the "
            "Wikipedia + Gutenberg corpus); `general-lm-2pass`: it, continued over a second seeded 20M-token subset "
            "(experiment=general_lm_cpu_pass2). *_ppl: the corpus's valid/test splits and WikiText-2 test "
            "(stage=perplexity). sentiment_*: own_csv's sentiment_dev with the README's own-CSV defaults (LM "
            "fine-tuning from this LM, then stage=probe and stage=classify; 8,640 train / 960 valid / 1,000 test). "
            "trec_*: experiments.trec_cpu's LM fine-tuning and classifier from this LM, seed 42, TREC_10 test (500). "
            "pass_h / pass_tokens_per_s: the second pass's training; downstream_train_s: the downstream steps' "
            "training seconds."), key="lm"), flush=True)


if __name__ == "__main__":
    main()
