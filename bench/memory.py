"""(d) Peak RSS of the LM data pipeline on a ~100M-token corpus.

``build``: tokenize WikiText-2 train once, then write a token-cache entry whose train part is those
documents repeated until the corpus reaches the target size (valid = WikiText-2 valid). Each
measurement then runs in a fresh process and reports its peak RSS (``VmHWM``):

* ``ours``: open the cache entry, build the vocabulary, ``lm_splits`` + ``lm_dataloaders`` (streamed from
  the memory-mapped arrays), iterate every training batch of one epoch;
* ``fastai``: the same corpus numericalized into RAM and fed to fastai's ``LMDataLoader`` as a list of
  tensors (the pipeline this replaced), iterating the first batches.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import emit, run_json
from ulmfit.environment import peak_rss_mb


def build(wikitext: Path, out: Path, target_tokens: int) -> dict[str, Any]:
    from ulmfit.data import TokenizerSettings, load_or_tokenize
    from ulmfit.data.readers import WikiTextReader
    from ulmfit.data.tokens import Docs, save_cached

    base = load_or_tokenize(WikiTextReader(wikitext), TokenizerSettings(), out / "wt2-cache")
    train = base.part("train")
    repeats = -(-target_tokens // train.n_tokens)
    ids = np.tile(np.asarray(train.ids), repeats)
    offsets = np.concatenate([[0], np.cumsum(np.tile(train.lengths, repeats))]).astype(np.int64)
    parts = {"train": Docs(ids, offsets, [""] * (len(train) * repeats)), "valid": base.part("valid")}
    path = out / "big" / f"wt2x{repeats}"
    save_cached(path, base.tokens, parts, {"parts": {n: {"docs": len(d), "tokens": d.n_tokens} for n, d in parts.items()},
                                           "built_from": str(base.path), "repeats": repeats})
    return {"path": str(path), "repeats": repeats, "tokens": int(offsets[-1]), "docs": len(train) * repeats,
            "bytes_on_disk": int(ids.nbytes + offsets.nbytes)}


def measure(path: Path, side: str, bs: int, bptt: int, max_batches: int | None) -> dict[str, Any]:
    import torch

    from ulmfit.data import build_vocab, lm_splits, numericalize
    from ulmfit.data.loaders import lm_dataloaders
    from ulmfit.data.tokens import open_cached

    baseline = peak_rss_mb()  # interpreter + torch + fastai, before any data
    t0 = time.perf_counter()
    corpus = open_cached(path)
    vocab = build_vocab(corpus, ["train"], 60000, 3)
    cpu = torch.device("cpu")
    if side == "ours":
        train, valid = lm_splits(corpus, vocab, ["train"], 0.1, seed=0)
        dl = lm_dataloaders(train, valid, vocab, bs, bptt, cpu).train
        n_tokens = train.n_tokens
    else:
        from fastai.text.data import LMDataLoader
        docs = numericalize(corpus, "train", vocab)
        flat = torch.from_numpy(docs.ids)
        tensors = [flat[s:e] for s, e in zip(docs.offsets[:-1].tolist(), docs.offsets[1:].tolist())]
        dl = LMDataLoader(tensors, lens=docs.lengths.tolist(), bs=bs, seq_len=bptt, shuffle=True)
        n_tokens = docs.n_tokens
    setup = time.perf_counter() - t0
    t0, seen = time.perf_counter(), 0
    for i, (x, _) in enumerate(dl):
        seen += x.numel()
        if max_batches and i + 1 >= max_batches:
            break
    return {"side": side, "tokens": n_tokens, "batches": i + 1, "of_batches": len(dl), "tokens_read": seen,
            "setup_seconds": setup, "iterate_seconds": time.perf_counter() - t0,
            "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb()}


def run(wikitext: Path, target_tokens: int = 100_000_000, bs: int = 64, bptt: int = 70,
        fastai_batches: int = 2000) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="ulmfit-bench-mem-"))
    corpus = run_json("bench.memory", "build", "--wikitext", str(wikitext), "--out", str(out),
                      "--tokens", str(target_tokens))
    common = ["measure", "--path", corpus["path"], "--bs", str(bs), "--bptt", str(bptt)]
    ours = run_json("bench.memory", *common, "--side", "ours")
    fastai = run_json("bench.memory", *common, "--side", "fastai", "--max-batches", str(fastai_batches))
    return {"corpus": corpus, "ours": ours, "fastai": fastai, "bs": bs, "bptt": bptt}


def report(r: dict[str, Any]) -> list[str]:
    c = r["corpus"]
    rows = [f"| {name} | {m['batches']:,} of {m['of_batches']:,} | {m['setup_seconds']:.1f} s | "
            f"{m['iterate_seconds']:.1f} s | {m['baseline_rss_mb']:,.0f} MB | **{m['peak_rss_mb']:,.0f} MB** |"
            for name, m in (("ours (memory-mapped `TokenStream`)", r["ours"]),
                            ("fastai `LMDataLoader` on in-RAM tensors", r["fastai"]))]
    return [
        "## (d) Peak RSS of the LM data pipeline",
        "",
        f"WikiText-2 train repeated {c['repeats']}x: **{c['tokens']:,} tokens** in {c['docs']:,} documents "
        f"({c['bytes_on_disk'] / 2**20:,.0f} MiB of int32 ids + offsets in the token cache). Each row is a fresh "
        f"process: open the cache, build the vocabulary, make the training loader (bs {r['bs']}, bptt {r['bptt']}), "
        "iterate batches. Baseline = the process after importing torch and fastai.",
        "",
        "| pipeline | batches read | setup | iterate | baseline RSS | peak RSS |",
        "|---|---|---|---|---|---|",
        *rows,
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--wikitext", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--tokens", type=int, required=True)
    m = sub.add_parser("measure")
    m.add_argument("--path", type=Path, required=True)
    m.add_argument("--side", choices=("ours", "fastai"), required=True)
    m.add_argument("--bs", type=int, default=64)
    m.add_argument("--bptt", type=int, default=70)
    m.add_argument("--max-batches", type=int, default=None)
    a = parser.parse_args()
    if a.cmd == "build":
        emit(build(a.wikitext, a.out, a.tokens))
    else:
        importlib.import_module("fastai.text.all")  # the baseline RSS includes the libraries, as in a stage
        emit(measure(a.path, a.side, a.bs, a.bptt, a.max_batches))


if __name__ == "__main__":
    main()
