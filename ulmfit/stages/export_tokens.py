"""Write a tokenized corpus as one portable file: tokenize once on a CPU box, ship the ids to GPU or cluster nodes.

corpus through the token cache (tokenized here on a miss) -> optional token budget on the train part -> one
compact file (``ulmfit.data.portable``) -> any data config reads it there with ``data.tokens=<file>``: no raw
files, no spaCy, the same fingerprint (so lineage and parent lookup match a run that tokenized the raw files).

    python -m ulmfit stage=export_tokens data=imdb data.root=../shared/data/imdb stage.output=imdb.tokens
    python -m ulmfit stage=pretrain data=imdb data.tokens=imdb.tokens ...        # elsewhere, without spaCy
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ulmfit.data import load_corpus
from ulmfit.data.portable import SUFFIX, describe, export_corpus
from ulmfit.report import print_table


def run(cfg: DictConfig) -> dict[str, Any]:
    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache)
    parts = list(cfg.stage.parts) if cfg.stage.parts is not None else None
    output = Path(cfg.stage.output or Path(cfg.paths.tokens) / f"{cfg.data.format}-{corpus.fingerprint}{SUFFIX}")
    output = output.expanduser()
    header = export_corpus(corpus, output, parts=parts, max_tokens=cfg.stage.max_tokens, seed=cfg.seed)
    print_table(f"portable tokens -> {output} ({output.stat().st_size / 2**20:.1f} MiB); read it with "
                f"data.tokens={output}", dict(describe(header)))
    return header
