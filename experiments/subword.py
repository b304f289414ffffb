"""SentencePiece subwords vs spaCy words (``data.tokenizer``) with the same pretraining budget for each, on TREC-6
and on IMDB at 1,000 labels. Writes experiments/results/subword.{md,csv} (TREC-6) and subword_imdb1k.{md,csv}.

    python -m experiments.subword --home runs-sp/                  # TREC-6, both tokenizers; rerun: finished steps are reused
    python -m experiments.subword --home runs-sp/ --tasks imdb1k   # IMDB at 1,000 labels from the same pretrained LMs

For each tokenizer: the CPU-sized AWD-LSTM pretrained on WikiText-2 (experiment=wikitext2_cpu) for --epochs passes
over --lm-tokens tokens of its train text (``stage.lm_tokens``: the same number of tokens, so about the same compute,
for each; a piece is shorter than a word, so the pieces cover less text), then TREC-6 from it (experiment=
trec_cpu_lm_finetune, then trec_cpu_classify), and TF-IDF on spaCy words on the same split. The
SentencePiece model is trained on the WikiText-2 train text (``data.sp_vocab_size``: --sp-vocab, default fastai's
choice) and reused by the TREC steps. WikiText-2 test perplexities are per token of each tokenizer, and per spaCy
token (the pieces' total loss over the words' count, from the token caches), which compares the two.

``imdb1k``: from each tokenizer's pretrained LM, LM fine-tuning on --imdb-lm-tokens tokens of IMDB train + unsup
(experiment=imdb_cpu_lm_finetune with that budget, the same for each), then experiments.imdb_transfer's classifier
on its 1,000-label draw 1 (incl. 100 validation), scored on its fixed 5,000 test reviews, beside TF-IDF on the
same draw.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
from pathlib import Path

from dataclasses import replace

from experiments import imdb_transfer
from experiments.common import (SHARED_DATA, Step, append_result, entry_lineage, entry_metrics, hardware,
                                recipe_text, run_recipe, stamp)

TOKENIZERS = ("spacy", "sentencepiece")
TASKS = ("trec", "imdb1k")
IMDB_LABELS, IMDB_DRAW, IMDB_TEST = 1000, 1, 5000  # imdb_transfer's budget, label draw and test subset


def _tokenizer(tokenizer: str, args: argparse.Namespace) -> dict[str, object]:
    """The overrides every step of one tokenizer shares."""
    data = {"data.tokenizer": tokenizer, "seed": args.seed, "train.precision": args.precision,
            "tokenizer.n_workers": 1}  # one process, as every step's one thread
    if tokenizer == "sentencepiece":
        data["data.sp_vocab_size"] = args.sp_vocab
    return data


def steps(tag: str, tokenizer: str, args: argparse.Namespace) -> list[Step]:
    """Pretrain -> TREC LM -> TREC classifier with one tokenizer; ``args``: the budget and data folders."""
    data = _tokenizer(tokenizer, args)
    pre, ft = f"{tag}-{tokenizer}-wt2", f"{tag}-{tokenizer}-trec-ft"
    return [Step("pretrain", pre, {"experiment": "wikitext2_cpu", "data.root": args.wikitext, **data,
                                   "stage.lm_tokens": args.lm_tokens, "train.epochs": args.epochs,
                                   "train.lr": args.lr}),
            Step("lm_finetune", ft, {"experiment": "trec_cpu_lm_finetune", "data.root": args.trec, **data,
                                     "stage.parent": pre}),
            Step("classify", f"{tag}-{tokenizer}-trec-clas", {"experiment": "trec_cpu_classify", "data.root": args.trec,
                                                             **data, "stage.parent": ft})]


def imdb_steps(tag: str, tokenizer: str, args: argparse.Namespace) -> list[Step]:
    """IMDB LM (from ``steps``' pretrained LM) -> classifier on imdb_transfer's 1,000-label draw, one tokenizer."""
    data = _tokenizer(tokenizer, args)
    ft = Step("lm_finetune", f"{tag}-{tokenizer}-imdb-ft", {"experiment": "imdb_cpu_lm_finetune", "data.root": args.imdb,
                                                            **data, "stage.parent": f"{tag}-{tokenizer}-wt2",
                                                            "stage.lm_tokens": args.imdb_lm_tokens})
    clas = imdb_transfer.run_plan("ulmfit", IMDB_LABELS, IMDB_DRAW, args.imdb, IMDB_TEST)
    return [ft, replace(clas, name=f"{tag}-{tokenizer}-imdb1k-clas",
                        overrides={**clas.overrides, **data, "stage.parent": ft.name})]


def timed(home: Path, plan: list[Step], log: Path) -> list[tuple[float | None, float]]:
    """Run the steps one by one: each one's wall seconds (None: its entry existed) and CPU seconds (its process's;
    the wall time also counts waiting for the cores, which other jobs shared)."""
    out = []
    for step in plan:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = run_recipe(home, [step], log=log)[0]
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.append((wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime))
    return out


def test_tokens(home: Path, lineage: dict) -> int:
    """How many tokens the corpus an entry read has in its test part, read from the token cache's meta.json."""
    data = lineage["data"]
    for meta_file in (home / ".cache" / "tokens").glob("*/meta.json"):
        meta = json.loads(meta_file.read_text())
        tokenized_with = meta.get("tokenized_with", {"kind": "spacy"})
        if meta.get("fingerprint") == data["fingerprint"] and tokenized_with == data["tokenizer"]:
            return meta["parts"]["test"]["tokens"]
    raise SystemExit(f"No token cache of {data['fingerprint']} ({data['tokenizer']['kind']}) under {home}/.cache.")


def pieces(home: Path, name: str) -> int | str:
    """The number of pieces of a pretrain entry's SentencePiece model ('–' for spaCy words)."""
    path = home / "store" / "pretrain" / name / "spm.model"
    if not path.is_file():
        return "–"
    from sentencepiece import SentencePieceProcessor
    return SentencePieceProcessor(model_file=str(path)).get_piece_size()


def trec(home: Path, args: argparse.Namespace) -> str:
    """TREC-6 per tokenizer, beside TF-IDF; the table so far."""
    tfidf = Step("tfidf", f"{args.tag}-trec-tfidf", {"data": "trec", "data.root": args.trec, "seed": args.seed})
    run_recipe(home, [tfidf], log=home / f"{args.tag}.log")
    tfidf_error = 100 * entry_metrics(home, "tfidf", tfidf.name)["test_error_rate"]
    words = None  # the WikiText-2 test part's spaCy tokens, which per-word perplexities divide by
    for tokenizer in TOKENIZERS:
        plan = steps(args.tag, tokenizer, args)
        times = timed(home, plan, home / f"{args.tag}.log")
        (pre, ft, clas), (p, f, c) = plan, (entry_metrics(home, s.stage, s.name) for s in plan)
        wall = [p["train_seconds"] if w is None else w for (w, _), p in zip(times, (p, f, c))]
        n = test_tokens(home, entry_lineage(home, "pretrain", pre.name))
        words = n if tokenizer == "spacy" else words
        row = {"date": stamp(), "run": f"{args.tag}-{tokenizer}", "tokenizer": tokenizer,
               "sp_pieces": pieces(home, pre.name), "lm_vocab": p["vocab_size"],
               "pretrain_tokens": f"{args.epochs} × {p['train_tokens']:,}", "pretrain_lr": args.lr,
               "wt2_test_ppl_per_token": round(p["test_perplexity"], 1),
               "wt2_test_ppl_per_word": round(math.exp(p["test_loss"] * n / words), 1) if words else "",
               "wt2_test_tokens": n, "trec_lm_ppl_before": round(f["valid_perplexity_before"], 1),
               "trec_lm_ppl_after": round(f["valid_perplexity"], 1),
               "trec_test_error_pct": round(100 * c["test_error_rate"], 2),
               "tfidf_test_error_pct": round(tfidf_error, 2),
               "pretrain_min": round(wall[0] / 60, 1), "trec_lm_min": round(wall[1] / 60, 1),
               "trec_clas_min": round(wall[2] / 60, 1),
               "cpu_min": round(sum(cpu for _, cpu in times) / 60, 1) if all(w is not None for w, _ in times) else "",
               "precision": entry_lineage(home, "classify", clas.name).get("precision", "")}
        md = append_result("subword", row, "SentencePiece subwords vs spaCy words, TREC-6", (
            f"`python -m experiments.subword` on {hardware()}.\n\n"
            f"Per tokenizer: pretraining {recipe_text('wikitext2_cpu')} with `stage.lm_tokens={args.lm_tokens}` "
            f"`train.epochs={args.epochs}` `train.lr={args.lr}` (the same number of tokens for each: "
            "pretrain_tokens is epochs × tokens; validation on WikiText-2's valid part), then TREC-6: "
            f"{recipe_text('trec_cpu_lm_finetune')}, then "
            f"{recipe_text('trec_cpu_classify')}; every step `train.precision={args.precision}` (what ran: "
            "precision), seed 42. sp_pieces: the SentencePiece model's size (fastai's choice unless "
            "data.sp_vocab_size is set); lm_vocab: the pretrained LM's vocabulary. wt2_test_ppl_per_word: the test "
            "loss summed over the tokenizer's wt2_test_tokens, divided by the spaCy words' count: comparable "
            "across the two. TREC perplexities are per token of each tokenizer (not comparable across them). "
            "TF-IDF: word 1-2-grams on spaCy tokens, C chosen on the same validation split. Test: TREC_10 (500 "
            "questions). *_min: wall minutes of each step (other jobs shared the 2 cores: see cpu_min, the "
            "steps' CPU minutes, one thread each)."), key="run")
    return md


def imdb1k(home: Path, args: argparse.Namespace) -> str:
    """IMDB at 1,000 labels per tokenizer (from the pretrained LMs of the TREC study's first step), beside TF-IDF on
    the same draw; the table so far."""
    log = home / f"{args.tag}.log"
    tfidf = imdb_transfer.run_plan("tfidf", IMDB_LABELS, IMDB_DRAW, args.imdb, IMDB_TEST)
    tfidf = replace(tfidf, name=f"{args.tag}-imdb1k-tfidf")
    run_recipe(home, [tfidf], log=log)
    tfidf_accuracy = entry_metrics(home, "tfidf", tfidf.name)["test_accuracy"]
    md = ""
    for tokenizer in args.tokenizers:
        plan = [steps(args.tag, tokenizer, args)[0], *imdb_steps(args.tag, tokenizer, args)]
        times = timed(home, plan, log)
        (pre, ft, clas), (p, f, c) = plan, (entry_metrics(home, s.stage, s.name) for s in plan)
        wall = [m["train_seconds"] if w is None else w for (w, _), m in zip(times, (p, f, c))]
        row = {"date": stamp(), "run": f"{args.tag}-{tokenizer}-imdb1k", "tokenizer": tokenizer,
               "sp_pieces": pieces(home, pre.name), "pretrain_entry": pre.name,
               "imdb_lm_tokens": f["train_tokens"], "imdb_lm_vocab": f["vocab_size"],
               "imdb_lm_ppl_before": round(f["valid_perplexity_before"], 1),
               "imdb_lm_ppl_after": round(f["valid_perplexity"], 1),
               "n_train": c["n_train"], "n_valid": c["n_valid"], "n_test": c["n_test"],
               "test_accuracy": round(c["test_accuracy"], 4), "tfidf_test_accuracy": round(tfidf_accuracy, 4),
               "imdb_lm_min": round(wall[1] / 60, 1), "clas_min": round(wall[2] / 60, 1),
               "precision": entry_lineage(home, "classify", clas.name).get("precision", ""), "hardware": hardware()}
        md = append_result("subword_imdb1k", row, "SentencePiece subwords vs spaCy words, IMDB at 1,000 labels", (
            "`python -m experiments.subword --tasks imdb1k`; each row's machine in its `hardware` column.\n\n"
            "Per tokenizer: the pretrained LM of `subword.md` (WikiText-2, the same token budget for each), LM "
            f"fine-tuning {recipe_text('imdb_cpu_lm_finetune')} with `stage.lm_tokens={args.imdb_lm_tokens}` "
            "(the same number of tokens for each: pieces or words), then experiments.imdb_transfer's ULMFiT "
            f"classifier on its label draw {IMDB_DRAW} of {IMDB_LABELS:,} reviews (incl. 10% validation) and "
            f"fixed {IMDB_TEST:,} test reviews; every step `train.precision={args.precision}` (what ran: "
            "precision), seed 42. IMDB LM perplexities are per token of each tokenizer (not comparable across "
            "them). TF-IDF: word 1-2-grams on spaCy tokens, the same draw, C on the same validation. *_min: wall "
            "minutes of the IMDB LM fine-tuning and the classifier."), key="run")
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs"), help="ULMFIT_HOME: store + token cache")
    ap.add_argument("--wikitext", type=Path, default=SHARED_DATA / "wikitext-2")
    ap.add_argument("--trec", type=Path, default=SHARED_DATA / "trec")
    ap.add_argument("--tag", default="subword", help="prefix of the entries (default: %(default)s)")
    ap.add_argument("--lm-tokens", type=int, default=1_200_000, help="pretraining tokens per epoch, each tokenizer "
                    "(WikiText-2's train part: 2.37M spaCy tokens)")
    ap.add_argument("--epochs", type=int, default=1, help="pretraining epochs (default: %(default)s)")
    ap.add_argument("--lr", type=float, default=3e-3, help="pretraining's peak LR (the recipe's 1e-2 sent a one-epoch "
                    "run of 1.2M tokens into a loss spike it spent the epoch recovering from; experiments/README.md)")
    ap.add_argument("--sp-vocab", type=int, default=None, help="SentencePiece pieces (default: fastai's choice)")
    ap.add_argument("--precision", default="auto", help="train.precision of every step (the TREC recipes': fp32)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tasks", nargs="+", default=["trec"], choices=TASKS, help="trec (default) and/or imdb1k")
    ap.add_argument("--tokenizers", nargs="+", default=list(TOKENIZERS), choices=TOKENIZERS,
                    help="imdb1k: the tokenizers to run (one each on its own core: two processes)")
    ap.add_argument("--imdb", type=Path, default=SHARED_DATA / "imdb")
    ap.add_argument("--imdb-lm-tokens", type=int, default=3_000_000, help="IMDB LM fine-tuning tokens, each "
                    "tokenizer (imdb1k)")
    args = ap.parse_args()
    home = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    args.wikitext, args.trec, args.imdb = args.wikitext.resolve(), args.trec.resolve(), args.imdb.resolve()
    for task in args.tasks:
        print(trec(home, args) if task == "trec" else imdb1k(home, args))


if __name__ == "__main__":
    main()
