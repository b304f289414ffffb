"""(e) ``predict`` throughput: documents/s from raw IMDB test reviews to class probabilities.

The classifier entry has the ``awd_lstm_cpu`` architecture (``model``: another ``conf/model/`` size, e.g. the
paper's ``awd_lstm`` for the GPU section) with freshly initialised weights (written through
the store like any ``classify`` entry): the work per document does not depend on the weight values, and this
keeps the benchmark independent of a training run. Timed: ``stage=predict`` as the CLI runs it (read CSV,
load entry, tokenize, predict, write CSV), in a fresh process, plus the tokenization share on its own.
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


def make_entry(root: Path, vocab_texts: list[str], model: str = "awd_lstm_cpu") -> None:
    from ulmfit.data.tokenizer import tokenize_ids
    from ulmfit.models import build_classifier, classifier_info, model_info
    from ulmfit.store import Store

    vocab = make_vocab(tokenize_ids(vocab_texts).counts(), min_freq=2, max_vocab=60000)
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
    make_entry(root, train["text"].tolist(), model)
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
