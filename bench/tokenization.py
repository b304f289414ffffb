"""(c) Tokenization: our fast path vs fastai's ``tokenize_df`` on the same texts, tokens compared one by one;
then the token cache: a cold ``load_or_tokenize`` (read + tokenize + write) and a cached re-run."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import emit, run_json


def imdb_texts(data: Path, limit: int | None) -> tuple[pd.DataFrame, Any]:
    """All IMDB reviews (train, test, unsup) as one frame, and the reader that feeds the token cache."""
    from ulmfit.data.readers import CsvReader
    files = {p: data / f"{p}.csv.xz" for p in ("train", "test", "unsup")}
    if limit:  # smoke runs: a small CSV of the first rows
        tmp = Path(tempfile.mkdtemp(prefix="ulmfit-bench-tok-"))
        for p, f in files.items():
            pd.read_csv(f, keep_default_na=False, nrows=limit // 3 + 1).to_csv(tmp / f"{p}.csv", index=False)
            files[p] = tmp / f"{p}.csv"
    reader = CsvReader(files)
    df = pd.concat(reader.read().values(), ignore_index=True)
    return df, reader


def child(data: Path, limit: int | None) -> dict[str, Any]:
    from fastai.text.core import defaults, tokenize_df
    from fastcore.basics import num_cpus

    from ulmfit.data.tokenizer import tokenize_ids
    from ulmfit.data.tokens import TokenizerSettings, load_or_tokenize

    df, reader = imdb_texts(data, limit)
    texts = df["text"].tolist()

    t0 = time.perf_counter()
    theirs, _ = tokenize_df(df[["text"]], text_cols="text")
    fastai_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    ours = tokenize_ids(texts)
    ours_s = time.perf_counter() - t0

    words = ours.words
    mismatches = sum(1 for i, toks in enumerate(theirs["text"])
                     if list(toks) != [words[j] for j in ours.ids[ours.offsets[i]:ours.offsets[i + 1]]])

    cache = Path(tempfile.mkdtemp(prefix="ulmfit-bench-cache-"))
    t0 = time.perf_counter()
    cold = load_or_tokenize(reader, TokenizerSettings(), cache)
    cold_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hit = load_or_tokenize(reader, TokenizerSettings(), cache)
    hit_s = time.perf_counter() - t0
    assert hit.cache_hit and not cold.cache_hit
    return {"docs": len(texts), "tokens": int(ours.offsets[-1]), "distinct_tokens": len(words),
            "fastai_workers": defaults.cpus, "our_workers": num_cpus(),
            "fastai_seconds": fastai_s, "ours_seconds": ours_s, "speedup": fastai_s / ours_s,
            "fastai_docs_per_second": len(texts) / fastai_s, "ours_docs_per_second": len(texts) / ours_s,
            "mismatched_docs": mismatches, "cold_cache_seconds": cold_s, "cached_rerun_seconds": hit_s}


def run(data: Path, limit: int | None = None) -> dict[str, Any]:
    args = ["--data", str(data)] + (["--limit", str(limit)] if limit else [])
    return run_json("bench.tokenization", *args)


def report(r: dict[str, Any]) -> list[str]:
    same = "identical" if r["mismatched_docs"] == 0 else f"**{r['mismatched_docs']} documents differ**"
    return [
        "## (c) Tokenization",
        "",
        f"{r['docs']:,} IMDB reviews (train + test + unsup), {r['tokens']:,} tokens ({r['distinct_tokens']:,} distinct), "
        f"fastai's default rules + spaCy blank English on both sides.",
        "",
        "| path | workers | seconds | docs/s | vs fastai |",
        "|---|---|---|---|---|",
        f"| fastai `tokenize_df` | {r['fastai_workers']} | {r['fastai_seconds']:.1f} | {r['fastai_docs_per_second']:,.0f} | 1.00x |",
        f"| ours (`ulmfit.data.tokenizer.tokenize_ids`) | {r['our_workers']} | {r['ours_seconds']:.1f} | "
        f"{r['ours_docs_per_second']:,.0f} | {r['speedup']:.2f}x |",
        "",
        f"Tokens: {same} for every document. Token cache (`load_or_tokenize`: read CSVs, tokenize, write): "
        f"cold {r['cold_cache_seconds']:.1f} s, cached re-run **{r['cached_rerun_seconds']:.2f} s**.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None)
    a = parser.parse_args()
    emit(child(a.data, a.limit))


if __name__ == "__main__":
    main()
