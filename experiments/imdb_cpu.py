"""IMDB with ULMFiT on a 2-core CPU in about 3 hours (2.8 h of training measured): WikiText-2 pretraining ->
LM fine-tuning on IMDB train + unsup (50k + 25k reviews, labels never read) -> classifier with gradual
unfreezing; beside TF-IDF, NB-SVM and the paper. Writes experiments/results/imdb_cpu.{md,csv}.

    python experiments/imdb_cpu.py --home runs/ --pretrain wt2-cpu-e3   # reuse a WikiText-2 pretrain entry
    python experiments/imdb_cpu.py --home runs/                         # pretrain first (experiment=wikitext2_cpu)

Resumable: every step writes a store entry named ``<tag>-<step>``; a rerun skips the steps whose entry
exists, so an interrupted session continues where it stopped. The results row is written once the
classifier exists; the CPU time of each step is read from its entry (train time) and from the log.
"""

from __future__ import annotations

from pathlib import Path

from common import RESULTS, append_result, entry_config, entry_lineage, entry_metrics, experiment_parser, hardware, has_entry, stamp, ulmfit

# bf16 autocast where the CPU has bf16 instructions (AMX / AVX512-BF16: ~1.6-2x fp32, bench/results.md), else
# fp32 (a CPU without AVX-512 cannot run PyTorch's LSTM in bf16); each entry's lineage records which ran.
PRECISION = ["train.precision=auto"]
# experiment=wikitext2_cpu with 2 epochs instead of 3 (the second epoch of imdb-cpu-pretrain took 19 min on the
# 2-core AMD machine; the first, 41 min, shared the CPU with tests), so that the whole recipe fits about 3 hours;
# LM fine-tuning on IMDB matters more for IMDB than the last WikiText-2 epoch.
PRETRAIN = ["train.epochs=2"]
# A 30k vocabulary (fastai's default is 60k): the decoder and softmax dominate a CPU step and scale with it.
# LR 1e-2 rather than the paper's 4e-3: this small LM, pretrained on 2M WikiText-2 tokens only, has more to
# learn from IMDB than a WT103 model (IMDB valid ppl 305 before fine-tuning). On the first 600k tokens, 1e-2
# reached ppl 144.8 and 4e-3 170.6 (`python -m ulmfit -m stage=lm_finetune ... stage.lm_tokens=600000
# train.lr=4e-3,1e-2`, the rest as here; 4.3 min each).
FINETUNE = ["train.epochs=1", "train.lr=1e-2", "train.bs=64", "stage.lm_parts=[train,unsup]", "data.max_vocab=30000"]
# The budget that fits a session beside the classifier: 12M of the 20.3M train + unsup tokens (a seeded subset
# of whole reviews; the vocabulary still comes from all of them) at ~3,500 tokens/s with the 30k vocabulary, about
# 1 h, and a 2% LM validation hold-out (1,500 reviews) instead of 10%, so that the two validation passes take
# ~1 min instead of ~7. One pass over more reviews rather than several over fewer.
LM_BUDGET = ["stage.lm_tokens=12000000", "data.valid_frac=0.02"]
# Gradual unfreezing as in fastai's IMDB recipe (head, +1 group, +2 groups, then all: train.unfreeze_phases=3)
# rather than the paper's one group per epoch: the skipped phase (all but the embeddings) costs a full ~20-min
# epoch on 22,500 reviews here. bs 64 as in the paper. 3 epochs with all groups unfrozen (~9 min each): with
# 1, the first run's training loss was still falling steeply at the end (83.3% test accuracy).
CLASSIFY = ["train.epochs=3", "train.lr=1e-2", "train.bs=64", "train.phase_lr_mult=0.5", "train.unfreeze_phases=3"]
# Classifier epochs are validated on a seeded 500 of the 2,500 held-out reviews (the per-epoch numbers only
# watch training; nothing is selected on them): ~30 s less per epoch. Training and test sets are unchanged.
VALIDATION = ["data.n_valid=500"]
PAPER = {"test_error_pct": 4.6, "note": "paper, WT103 + 400/1152/3 model, fwd+bwd ensemble; 5.3 single direction"}


STEP_METRICS = {"pretrain": ["valid_perplexity", "test_perplexity"],
                "lm_finetune": ["valid_perplexity_before", "valid_perplexity", "train_tokens", "vocab_size"],
                "classify": ["test_accuracy", "test_error_rate", "valid_accuracy", "n_train"],
                "tfidf": ["test_accuracy"], "nbsvm": ["test_accuracy"]}


def step(home: Path, log: Path, stage: str, name: str, *args: str) -> float | None:
    """Run a stage unless its entry exists, then record its row in imdb_cpu_steps (once); seconds of this run
    (None when skipped). Each finished step is kept as soon as it exists, so a long run's parts survive a
    session that ends before the whole recipe does."""
    seconds = None
    if has_entry(home, stage, name):
        print(f"= {stage}/{name} exists, skipped")
    else:
        seconds = ulmfit(f"stage={stage}", f"run_name={name}", *args, home=home, log=log)
    record_step(home, stage, name)
    return seconds


def record_step(home: Path, stage: str, name: str) -> None:
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
        "Written by `python experiments/imdb_cpu.py` after every step (`imdb_cpu.md` has the final row). "
        "`train_seconds` is the wall time of the stage's training on this machine, including any time the "
        "machine spent on other jobs. `malloc` / `peak_rss_mb`: the allocator the stage ran with and its peak resident "
        "memory (from the entry's lineage)."))


def main() -> None:
    ap = experiment_parser(__doc__, "imdb", "imdb-cpu")
    ap.add_argument("--until", choices=("pretrain", "lm_finetune", "classify", "baselines"), default="baselines",
                    help="stop after this step (to fit a session; rerun to continue)")
    args = ap.parse_args()
    home, log = args.home.resolve(), args.home.resolve() / f"{args.tag}.log"
    home.mkdir(parents=True, exist_ok=True)
    common = [f"seed={args.seed}", *PRECISION]
    imdb = ["data=imdb", f"data.root={Path(args.imdb).resolve()}"]
    pre, ft, clas = args.pretrain or f"{args.tag}-pretrain", f"{args.tag}-ft", f"{args.tag}-clas"

    if args.pretrain is None:
        step(home, log, "pretrain", pre, "experiment=wikitext2_cpu", f"data.root={Path(args.wikitext).resolve()}",
             *PRETRAIN, *common)
    if args.until == "pretrain":
        return
    step(home, log, "lm_finetune", ft, *imdb, f"stage.parent={pre}", *FINETUNE, *LM_BUDGET, *common)
    if args.until == "lm_finetune":
        return
    step(home, log, "classify", clas, *imdb, f"stage.parent={ft}", *CLASSIFY, *VALIDATION, *common)
    if args.until == "classify":
        return
    for baseline in ("tfidf", "nbsvm"):
        step(home, log, baseline, f"{args.tag}-{baseline}", *imdb, f"seed={args.seed}")

    p, f, c = (entry_metrics(home, s, n) for s, n in [("pretrain", pre), ("lm_finetune", ft), ("classify", clas)])
    t, n = (entry_metrics(home, b, f"{args.tag}-{b}") for b in ("tfidf", "nbsvm"))
    fc, cc = entry_config(home, "lm_finetune", ft), entry_config(home, "classify", clas)  # the recipe each row ran
    train_s = {"pretrain": p["train_seconds"], "lm_finetune": f["train_seconds"], "classify": c["train_seconds"]}
    row = {"date": stamp(), "tag": args.tag, "seed": args.seed, "pretrain_entry": pre,
           "wt2_valid_ppl": round(p["valid_perplexity"], 1),
           "imdb_lm_ppl_before": round(f["valid_perplexity_before"], 1), "imdb_lm_ppl_after": round(f["valid_perplexity"], 1),
           "lm_tokens": f["train_tokens"], "lm_lr": fc["train"]["lr"], "clas_epochs_all_unfrozen": cc["train"]["epochs"],
           "n_train": c["n_train"], "test_accuracy": round(c["test_accuracy"], 4),
           "precision": entry_lineage(home, "classify", clas).get("precision", ""),  # what train.precision=auto ran as
           "test_error_pct": round(100 * c["test_error_rate"], 2),
           "tfidf_test_accuracy": round(t["test_accuracy"], 4), "nbsvm_test_accuracy": round(n["test_accuracy"], 4),
           **{f"{k}_train_s": round(v) for k, v in train_s.items()},
           "total_train_cpu_h": round(sum(train_s.values()) / 3600, 2)}
    md = append_result("imdb_cpu", row, "IMDB with ULMFiT on a 2-core CPU", (
        f"Generated by `python experiments/imdb_cpu.py` on {hardware()}.\n\n"
        "Recipe: `awd_lstm_cpu` (200/576/3) pretrained on WikiText-2 train (the pretrain entry's recipe, "
        f"`experiment=wikitext2_cpu {' '.join(PRETRAIN)}` unless --pretrain named another); LM fine-tuned on IMDB train + unsup ({' '.join(FINETUNE + LM_BUDGET)}); classifier with "
        f"gradual unfreezing, discriminative LRs (÷2.6) and STLR ({' '.join(CLASSIFY + VALIDATION)}), all {' '.join(PRECISION)}. "
        "The classifier trains on 22,500 labelled reviews (2,500 held out; a seeded 500 of them validate each epoch) and is tested on all "
        "25,000 test reviews; TF-IDF and NB-SVM use the same split. `*_train_s` = wall seconds of each stage's "
        f"training on this machine. Paper: {PAPER['test_error_pct']}% error ({PAPER['note']}). Rows of earlier recipes "
        "differ in the LM tokens / LR and final classifier epochs shown; the recipe text is the latest row's."), key="tag")
    print(md)


if __name__ == "__main__":
    main()
