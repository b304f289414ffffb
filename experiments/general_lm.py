"""The general-domain LM that ships with the package: pretrain the CPU-sized AWD-LSTM on a token budget of the
Wikipedia + Gutenberg corpus (`experiment=general_lm_cpu`; checkpointed within its one long epoch, so a rerun
after an interruption continues it), report its perplexity on the corpus's valid/test splits and on WikiText-2
test (`stage=perplexity`), and with --ship export it in fp16 to ulmfit/pretrained/general-lm/ (general-lm-bwd/ for --backwards: the same corpus subset and
vocabulary, each document read right to left, for forward + backward ensembles).
Writes experiments/results/general_lm.{md,csv}.

    python -m experiments.general_lm --home runs/                    # train (or continue) and report
    python -m experiments.general_lm --home runs/ --ship             # ... and write the shipped entry
    python -m experiments.general_lm --home runs/ --backwards --ship # the backward LM
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments.common import SHARED_DATA, Step, append_result, entry_lineage, entry_metrics, hardware, \
    run_recipe, run_ulmfit, stamp
from ulmfit.directions import BACKWARD, FORWARD, backward_name

NAMES = {False: "general-lm-cpu", True: backward_name("general-lm-cpu")}  # the store entries, by direction
SHIPPED = {False: "general-lm", True: backward_name("general-lm")}        # the shipped ones (stage.parent=<name>)


def step(corpus: Path, backwards: bool) -> Step:
    return Step("pretrain", NAMES[backwards], {"experiment": "general_lm_cpu", "data.root": corpus,
                                               "direction": BACKWARD if backwards else FORWARD})


def wikitext2_perplexity(home: Path, name: str, wikitext: Path) -> dict:
    """The entry's loss/perplexity/OOV rate on WikiText-2 test, through the CLI's perplexity stage."""
    out = home / "evaluations" / f"perplexity-{name}-wikitext2.json"
    run_ulmfit("stage=perplexity", f"stage.model=pretrain/{name}", "data=wikitext2", f"data.root={wikitext}",
               "stage.parts=[test]", f"stage.output={out}", home=home)
    return json.loads(out.read_text())["test"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs"), help="ULMFIT_HOME: store + token cache")
    ap.add_argument("--corpus", type=Path, default=SHARED_DATA / "wiki-gutenberg")
    ap.add_argument("--wikitext", type=Path, default=SHARED_DATA / "wikitext-2")
    ap.add_argument("--backwards", action="store_true", help="the backward LM (general-lm-bwd)")
    ap.add_argument("--ship", action="store_true", help="export the entry to ulmfit/pretrained/<shipped name>")
    args = ap.parse_args()
    home, name = args.home.resolve(), NAMES[args.backwards]
    run_recipe(home, [step(args.corpus.resolve(), args.backwards)], log=home / f"{name}.log")
    m, lineage = entry_metrics(home, "pretrain", name), entry_lineage(home, "pretrain", name)
    wt2 = wikitext2_perplexity(home, name, args.wikitext.resolve())
    row = {"date": stamp(), "entry": name, "direction": "backward" if args.backwards else "forward",
           "train_tokens": m["train_tokens"], "vocab": m["vocab_size"],
           "valid_ppl": round(m["valid_perplexity"], 1), "test_ppl": round(m["test_perplexity"], 1),
           "wt2_test_ppl": round(wt2["perplexity"], 1), "wt2_test_oov_pct": round(100 * wt2["oov_rate"], 2),
           "train_h": round(m["train_seconds"] / 3600, 2), "tokens_per_s": round(m["tokens_per_second"]),
           "precision": lineage["precision"], "resumed": len(lineage.get("resumed", [])), "hardware": hardware()}
    if args.ship:
        from ulmfit.shipped import export
        out = export(home / "store" / "pretrain" / name, SHIPPED[args.backwards])
        row["shipped_mb"] = round((out / "model.safetensors").stat().st_size / 2**20, 1)
    print(append_result("general_lm", row, "The shipped general-domain LMs", (
        "`python -m experiments.general_lm [--backwards]`; each row's machine in its `hardware` column.\n"
        "Recipe `experiment=general_lm_cpu`: `awd_lstm_cpu` (emb 200, 3×576, tied), vocab 30k (min_freq 3), one "
        "epoch over a seeded 20M-token subset of whole documents of the 101M-token Wikipedia + Gutenberg corpus, "
        "one-cycle LR 1e-2, drop_mult 0.1, bs 64, bptt 70, Adam(0.7, 0.99), `precision=auto`. valid/test: the "
        "corpus's own splits (0.50M / 0.70M fastai tokens, mostly Wikipedia). WikiText-2 test: its text through the "
        "same tokenizer and vocabulary (`stage=perplexity`; WikiText's `<unk>` and words outside the 30k vocabulary "
        "count as xxunk, `wt2_test_oov_pct`), so it is not comparable to published WikiText-2 perplexities. "
        "train_h: training time of the run, over `resumed` interruptions; tokens_per_s: its average. `backward`: the "
        "same subset and vocabulary, each document read right to left."), key="entry"))


if __name__ == "__main__":
    main()
