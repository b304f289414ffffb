"""(e) ``predict`` throughput: documents/s from raw IMDB test reviews to class probabilities.

The classifier entry has the ``awd_lstm_cpu`` architecture (``model``: another ``conf/model/`` size, e.g. the
paper's ``awd_lstm`` for the GPU section) with freshly initialised weights (written through
the store like any ``classify`` entry): the work per document does not depend on the weight values, and this
keeps the benchmark independent of a training run. Timed: ``stage=predict`` as the CLI runs it (read CSV,
load entry, tokenize, predict, write CSV), in a fresh process, plus the tokenization share on its own.

The GPU section (``bench/gpu/``) runs ``from_tokens`` instead: the GPU machine has no spaCy, so no raw text can
be tokenized there, and a portable token file gives back tokens, not the raw text. It times the part of
``stage=predict`` after tokenization, on the same classes and calls (``ulmfit.inference.load_ensemble``,
``Classifier.predict_probs``: load the entry, map the tokens to its vocabulary, batch, predict) for IMDB test
reviews taken from a portable token file as ``TokenIds``, the form ``stage=predict``'s tokenizer returns.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from fastai.text.data import make_vocab

from bench.common import emit, run_json

ENTRY = "bench-random-init"


def compose_config(*overrides: str):
    """The real composed config, as the CLI would build it."""
    from hydra import compose, initialize_config_dir

    from bench.common import REPO
    from ulmfit.config import register_resolvers
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def make_entry(root: Path, vocab: list[str], model: str = "awd_lstm_cpu") -> None:
    from ulmfit.models import build_classifier, classifier_info, model_info
    from ulmfit.store import Store

    cfg = compose_config("stage=classify", f"model={model}", f"paths.root={root}")
    info = classifier_info(model_info(cfg.model, len(vocab), 0.5), cfg.model.head, ["neg", "pos"], 0.5, cfg.train.bptt)
    with Store(cfg.paths.store).create("classify", ENTRY, {"parent": None, "note": "random init, for benchmarking"}) as w:
        w.save_model(build_classifier(info))
        w.save_json("vocab.json", vocab)
        w.save_json("model.json", info)
        w.save_json("metrics.json", {})
        w.save_config(cfg)


def child(data: Path, n_docs: int, model: str = "awd_lstm_cpu", device: str = "auto") -> dict[str, Any]:
    from ulmfit.data.tokenizer import tokenize_ids
    from ulmfit.stages import predict

    root = Path(tempfile.mkdtemp(prefix="ulmfit-bench-predict-"))
    test = pd.read_csv(data / "test.csv.xz", keep_default_na=False).sample(n=n_docs, random_state=0)
    train = pd.read_csv(data / "train.csv.xz", keep_default_na=False, nrows=5000)
    make_entry(root, make_vocab(tokenize_ids(train["text"].tolist()).counts(), min_freq=2, max_vocab=60000), model)
    test[["text"]].to_csv(root / "inputs.csv", index=False)
    cfg = compose_config("stage=predict", f"stage.input={root / 'inputs.csv'}", f"paths.root={root}",
                         f"stage.models=[{ENTRY}]", f"train.device={device}")
    t0 = time.perf_counter()
    out = predict.run(cfg)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    tok = tokenize_ids(test["text"].tolist())
    tok_s = time.perf_counter() - t0
    assert len(out) == n_docs
    return {"docs": n_docs, "tokens": tok.n_tokens, "seconds": seconds, "docs_per_second": n_docs / seconds,
            "tokenize_seconds": tok_s, "bs": int(cfg.stage.bs), "model": model, "device": device}


def from_tokens(data: list[str], n_docs: int, model: str = "awd_lstm_cpu", device: str = "auto") -> dict[str, Any]:
    """Prediction without tokenization (the GPU section's): ``n_docs`` IMDB test reviews of the corpus that the
    overrides ``data`` pick (``data=imdb data.tokens=<file> data.parts=[train,test] paths.cache=<dir>``), the
    fixed seeded subset ``data.n_test`` would score, as ``TokenIds`` into the corpus's tokens. Timed: loading the
    entry and ``Classifier.predict_probs`` (its vocabulary lookup, batches, class probabilities): what
    ``stage=predict`` does after tokenizing, without reading or writing a CSV."""
    import numpy as np

    from ulmfit.data import build_vocab, load_corpus, subsample_test
    from ulmfit.data.tokenizer import TokenIds
    from ulmfit.inference import load_ensemble
    from ulmfit.store import Store
    from ulmfit.hardware import resolve_device

    with tempfile.TemporaryDirectory(prefix="ulmfit-bench-predict-") as tmp:
        root = Path(tmp)
        cfg = compose_config("stage=predict", *data, f"paths.root={root}", f"train.device={device}")
        corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache)
        n_vocab_docs = min(5000, len(corpus.part("train")))  # as child(): the vocabulary of the first 5,000 reviews
        make_entry(root, build_vocab(corpus, ["train"], 60000, 2, docs=np.arange(n_vocab_docs)), model)
        test = subsample_test(corpus.part("test"), n_docs)
        tokens = TokenIds(corpus.tokens, np.asarray(test.ids), np.asarray(test.offsets, dtype=np.int64))
        bs = int(cfg.stage.bs)
        t0 = time.perf_counter()
        (clf,) = load_ensemble(Store(cfg.paths.store), [ENTRY], resolve_device(device))
        probs = clf.predict_probs(tokens, bs)
        seconds = time.perf_counter() - t0
    assert probs.shape == (len(test), len(clf.classes))
    return {"docs": len(test), "tokens": tokens.n_tokens, "seconds": seconds, "docs_per_second": len(test) / seconds,
            "tokenize_seconds": None, "bs": bs, "model": model, "device": str(next(clf.model.parameters()).device),
            "from": "token ids"}


def run(data: Path, n_docs: int = 2000, model: str = "awd_lstm_cpu", device: str = "auto") -> dict[str, Any]:
    """``stage=predict`` in a fresh process; ``device`` as ``train.device`` takes it (auto: CUDA when present)."""
    return run_json("bench.predict", "--data", str(data), "--docs", str(n_docs), "--model", model, "--device", device)


def report(r: dict[str, Any]) -> list[str]:
    return [
        "## (e) Prediction throughput",
        "",
        f"`stage=predict` on {r['docs']:,} random IMDB test reviews ({r['tokens']:,} tokens, batch size {r['bs']}), "
        f"`{r.get('model', 'awd_lstm_cpu')}` classifier (BPT3C, concat pooling), fp32: read CSV, load the entry, "
        "tokenize, predict, write.",
        "",
        f"**{r['docs_per_second']:,.1f} docs/s** ({r['seconds']:.1f} s in all; tokenization alone {r['tokenize_seconds']:.1f} s).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--model", default="awd_lstm_cpu", help="a conf/model/ name")
    parser.add_argument("--device", default="auto", help="train.device: auto, cpu, cuda")
    a = parser.parse_args()
    emit(child(a.data, a.docs, a.model, a.device))


if __name__ == "__main__":
    main()
