"""Perplexity of a language model entry on a corpus: e.g. the shipped general-domain LM on WikiText-2 test.

entry (pretrain or lm_finetune) -> corpus through the token cache -> the entry's vocabulary (tokens it lacks
become xxunk, reported as ``oov_rate``) -> fastai's validation loop -> loss, accuracy, perplexity per part.
Perplexities are comparable only between models with the same tokenization and vocabulary: a smaller
vocabulary maps more tokens to xxunk, which is easy to predict.

    python -m ulmfit stage=perplexity stage.model=pretrain/general-lm data=wikitext2 data.root=<folder>
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastai.data.core import DataLoaders
from omegaconf import DictConfig

from ulmfit.data import TokenStream, load_corpus
from ulmfit.data.loaders import lm_loader
from ulmfit.errors import UsageError
from ulmfit.files import write_atomic
from ulmfit.report import print_table
from ulmfit.stages.common import subword_model
from ulmfit.store import Store
from ulmfit.hardware import resolve_hardware
from ulmfit.training import lm_eval, lm_learner
from ulmfit.weights import load_model


def run(cfg: DictConfig) -> dict[str, Any]:
    stage, _, name = str(cfg.stage.model).partition("/")
    if stage not in ("pretrain", "lm_finetune") or not name:
        raise UsageError(f"stage.model={cfg.stage.model!r}: give an LM entry as pretrain/<name> or "
                         f"lm_finetune/<name>.")
    entry = Store(cfg.paths.store).get(stage, name)
    device, precision = resolve_hardware(cfg.train)
    # data.tokenizer=sentencepiece: the texts cut by the LM's own model
    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache, subword_model(cfg, entry, cfg.stage.parts))
    if missing := [p for p in cfg.stage.parts if p not in corpus.parts]:
        raise UsageError(f"stage.parts has {missing}, which the corpus lacks (it has {list(corpus.parts)}).")
    vocab, model = entry.vocab, load_model(entry)
    report: dict[str, Any] = {"model": entry.ref, "data": cfg.data.format, "precision": precision}
    for part in cfg.stage.parts:
        stream = TokenStream.from_parts(corpus, [part], vocab)
        dl = lm_loader(stream, cfg.train.eval_bs, cfg.train.bptt, False, device, entry.model_info["backwards"])
        learn = lm_learner(DataLoaders(dl, dl, device=device), model, cfg.train, precision)
        ids = stream.lookup[stream.sources[0]]
        report[part] = {**lm_eval(learn, dl), "tokens": stream.n_tokens, "oov_rate": float((ids == 0).mean())}
    path = Path(cfg.stage.output or Path(cfg.paths.root) / "evaluations" /
                f"perplexity-{entry.name}-{cfg.data.format}.json").expanduser()
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(report, indent=2), encoding="utf-8"))
    print_table(f"perplexity of {entry.ref} -> {path}",
                {f"{p}_{k}": v for p in cfg.stage.parts for k, v in report[p].items()})
    return report
