"""Tokenization (fastai ``Tokenizer`` rules + spaCy blank English, or a SentencePiece model), its on-disk cache, and
numericalization.

A corpus is tokenized once and cached as flat integer arrays, keyed by a fingerprint of the input files,
the reader's options and the tokenizer settings (and library versions). The fingerprint names the texts and is
what lineage records and parent lookup matches; a corpus cut into SentencePiece pieces is cached under that
fingerprint joined with its model's sha256 (``TokenizerSettings.cache_name``). Token ids in the cache index a
sorted list of every distinct token; numericalizing against a vocabulary (any ``max_vocab``/``min_freq``,
or a parent model's vocab) is then one vectorised lookup, so a second run or a sweep never tokenizes again.

Cache layout (``<cache_dir>/<fingerprint>/``, written atomically)::

    tokens.json                all distinct tokens, sorted; index = cached token id
    <part>.ids.npy             int32, every document's token ids back to back
    <part>.offsets.npy         int64, document boundaries (n_docs + 1)
    <part>.labels.json         one label per document ("" = unlabelled)
    meta.json                  fingerprint inputs, sizes, tokenization time
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from fastai.text.core import UNK, defaults
from fastai.text.data import make_vocab

from ulmfit.data import subword
from ulmfit.data.readers import CsvReader
from ulmfit.data.tokenizer import TokenIds, counts_of, tokenize_ids
from ulmfit.errors import UsageError
from ulmfit.files import atomic_path, sha256_file
from ulmfit.options import PARENT_VOCAB

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the cache layout or the document splitting changes
COUNT_CHUNK = 1 << 24


SPACY_MISSING = "not installed"  # the signature's spaCy version where it is absent: matches no cache it wrote


def spacy_version() -> str:
    """The installed spaCy's version (the same string as ``spacy.__version__``) without importing spaCy."""
    try:
        return importlib.metadata.version("spacy")
    except importlib.metadata.PackageNotFoundError:
        return SPACY_MISSING


@dataclass(frozen=True)
class TokenizerSettings:
    """fastai's default pre-rules (fix_html, replace_rep, ..., replace_maj, lowercase) + spaCy blank ``lang``, or
    with ``sp_model`` the pieces of that SentencePiece model (``ulmfit.data.subword``)."""

    lang: str = "en"
    n_workers: int | None = None  # None = one per core; does not change the output
    sp_model: Path | None = None  # data.tokenizer=sentencepiece: the model file; None: spaCy words

    @classmethod
    def from_config(cls, tok_cfg: Any, sp_model: Path | None = None) -> "TokenizerSettings":
        """From the ``tokenizer`` config group (and the SentencePiece model a stage reads with, if any)."""
        return cls(lang=tok_cfg["lang"], n_workers=tok_cfg["n_workers"], sp_model=sp_model)

    @property
    def rules(self) -> list:
        return list(defaults.text_proc_rules)

    @property
    def kind(self) -> str:
        return subword.SENTENCEPIECE if self.sp_model is not None else subword.SPACY

    def tokenize_ids(self, texts: Sequence[str], index: dict[str, int] | None = None) -> TokenIds:
        """fastai-identical tokens of ``texts`` with these settings (``ulmfit.data.tokenizer.tokenize_ids``, or
        ``ulmfit.data.subword.tokenize_ids``)."""
        if self.sp_model is not None:
            return subword.tokenize_ids(texts, self.sp_model, index)
        return tokenize_ids(list(texts), self.lang, self.rules, n_workers=self.n_workers, index=index)

    def record(self) -> dict[str, Any]:
        """The tokenizer as lineage records it: its kind, and a SentencePiece model's sha256."""
        if self.sp_model is None:
            return {"kind": self.kind}
        return {"kind": self.kind, "sp_model_sha256": file_sha256(self.sp_model),
                "sentencepiece": subword.sentencepiece_version()}

    def cache_name(self, fingerprint: str) -> str:
        """The cache folder of the corpus ``fingerprint`` names, tokenized with these settings: the fingerprint
        itself for spaCy words, joined with the model's sha256 (and sentencepiece's version) for pieces."""
        if self.sp_model is None:
            return fingerprint
        record = json.dumps({"fingerprint": fingerprint, **self.record()}, sort_keys=True).encode()
        return f"{fingerprint[:12]}-sp-{hashlib.sha256(record).hexdigest()[:12]}"

    def signature(self) -> dict[str, Any]:
        """Everything that changes the tokens (not ``n_workers``). spaCy's version comes from its installed
        metadata, not an import: a cache hit then never loads spaCy (a GPU node reading cached or portable
        corpora need not have it)."""
        import fastai
        return {"lang": self.lang, "rules": [r.__name__ for r in self.rules],
                "post_rules": [r.__name__ for r in defaults.text_postproc_rules],
                "special": list(defaults.text_spec_tok), "fastai": fastai.__version__,
                "spacy": spacy_version(), "cache_format": CACHE_FORMAT}


@dataclass
class Docs:
    """Documents as one flat id array plus boundaries: no per-document Python objects."""

    ids: np.ndarray
    offsets: np.ndarray
    labels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1] - self.offsets[0])

    def doc(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    def subset(self, idx: Sequence[int] | np.ndarray) -> "Docs":
        """The documents at ``idx`` (in that order), copied into a new flat array."""
        idx = np.asarray(idx, dtype=np.int64)
        lengths = self.lengths[idx]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = (np.concatenate([self.doc(i) for i in idx]) if len(idx) else self.ids[:0]).astype(self.ids.dtype)
        labels = [self.labels[i] for i in idx] if self.labels else []
        return Docs(ids, offsets, labels)

    @staticmethod
    def concat(parts: Iterable["Docs"]) -> "Docs":
        parts = list(parts)
        ids = np.concatenate([p.ids[p.offsets[0]:p.offsets[-1]] for p in parts])
        lengths = np.concatenate([p.lengths for p in parts])
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return Docs(ids, offsets, [lab for p in parts for lab in (p.labels or [""] * len(p))])


@dataclass
class TokenizedCorpus:
    """A cached, tokenized corpus: ``tokens[i]`` is the string of cached id ``i``."""

    path: Path
    fingerprint: str
    tokens: list[str]
    parts: dict[str, Docs]
    cache_hit: bool = False
    seconds: float = 0.0  # time to tokenize (miss) or to load (hit)
    tokenizer: dict[str, Any] = field(default_factory=lambda: {"kind": subword.SPACY})  # TokenizerSettings.record

    def counts(self, parts: Iterable[str], docs: Sequence[int] | None = None) -> Counter:
        """Token counts over ``parts``; with ``docs``, over those documents of each part only."""
        total = np.zeros(len(self.tokens), dtype=np.int64)
        for p in parts:
            part = self.part(p)
            if docs is not None:
                total += np.bincount(part.subset(docs).ids, minlength=len(self.tokens))
                continue
            for i in range(0, len(part.ids), COUNT_CHUNK):  # bounded RAM on memory-mapped corpora of any size
                total += np.bincount(part.ids[i:i + COUNT_CHUNK], minlength=len(self.tokens))
        return counts_of(self.tokens, total)

    def part(self, name: str) -> Docs:
        if name not in self.parts:
            raise UsageError(f"The corpus has no '{name}' part (it has: {', '.join(self.parts)}). Check the "
                             f"stage's data parts config.")
        return self.parts[name]

    def decode(self, ids: np.ndarray) -> list[str]:
        return [self.tokens[i] for i in ids]


# ---------------------------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    """The file's sha256, computed once per process for the same file, size and modification time: a stage that
    checks its parent's data before reading (``data_identity``) then loads the corpus hashes each file once."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def fingerprint(reader: Any, settings: TokenizerSettings) -> tuple[str, dict[str, Any]]:
    """Key of a tokenized corpus: file contents (not paths), reader options, tokenizer signature (fastai's rules,
    spaCy's; the same for SentencePiece pieces, whose model ``TokenizerSettings.cache_name`` adds)."""
    options = {k: (dict(v) if isinstance(v, dict) else v) for k, v in dataclasses.asdict(reader).items()
               if k not in ("root", "files_by_part", "task")}  # the task reads labels, which are cached unparsed
    if isinstance(reader, CsvReader):
        options["parts"] = sorted(reader._paths())
        # one column under the option's earlier name and form: caches and entries made before text_cols match
        cols = options.pop("text_cols")
        options["text_col"] = cols[0] if len(cols) == 1 else list(cols)
    files = reader.files()
    h = hashlib.sha256()
    h.update(json.dumps({"reader": type(reader).__name__, "options": options,
                         "tokenizer": settings.signature()}, sort_keys=True, default=str).encode())
    for f in files:
        if not f.is_file():
            raise UsageError(f"Data file {f} does not exist. Fix the path in the data config.")
        h.update(f.name.encode() + b"\0" + file_sha256(f).encode())
    info = {"reader": type(reader).__name__, "options": options, "tokenizer": settings.signature(),
            "n_files": len(files), "files": [str(f) for f in files[:20]]}
    return h.hexdigest()[:24], info


def load_or_tokenize(reader: Any, settings: TokenizerSettings, cache_dir: str | os.PathLike) -> TokenizedCorpus:
    """Return the tokenized corpus of ``reader``, from the cache when its fingerprint is there."""
    t0 = time.perf_counter()
    key, info = fingerprint(reader, settings)
    path = Path(cache_dir).expanduser() / settings.cache_name(key)
    if (path / "meta.json").is_file():
        corpus = open_cached(path)
        corpus.cache_hit, corpus.seconds = True, time.perf_counter() - t0
        log.info("Token cache hit %s (%.1fs)", path, corpus.seconds)
        return corpus

    if settings.kind == subword.SPACY and spacy_version() == SPACY_MISSING:
        raise UsageError(f"No token cache {path.name} for this corpus, and tokenizing it needs spaCy, which is not "
                         f"installed: pip install spacy, or tokenize where it is and read the result here with "
                         f"data.tokens=<file> (python -m ulmfit stage=export_tokens ... writes that file).")
    raw = reader.read()
    index: dict[str, int] = {}
    parts: dict[str, Docs] = {}
    for name, df in raw.items():
        t_part = time.perf_counter()
        tokenized = settings.tokenize_ids(df["text"].tolist(), index=index)
        parts[name] = Docs(tokenized.ids, tokenized.offsets, df["label"].tolist())
        log.info("Tokenized %s: %d docs, %d tokens in %.1fs", name, len(df), len(tokenized.ids),
                 time.perf_counter() - t_part)
    # Sort the token list so ids (and vocab tie-breaking) do not depend on worker completion order.
    tokens = sorted(index)
    remap = np.empty(len(index), dtype=np.int32)
    remap[[index[t] for t in tokens]] = np.arange(len(tokens), dtype=np.int32)
    for docs in parts.values():
        docs.ids = remap[docs.ids]
    seconds = time.perf_counter() - t0
    save_cached(path, tokens, parts, {**info, "fingerprint": key, "tokenized_with": settings.record(),
                                      "tokenize_seconds": round(seconds, 2),
                                "parts": {n: {"docs": len(d), "tokens": int(d.n_tokens)} for n, d in parts.items()}})
    log.info("Tokenized corpus in %.1fs, cached at %s", seconds, path)
    del parts  # reopen memory-mapped, as a cache hit would: RAM stays bounded for any corpus size
    corpus = open_cached(path)
    corpus.seconds = seconds
    return corpus


def save_cached(path: Path, tokens: list[str], parts: dict[str, Docs], meta: dict[str, Any]) -> None:
    """Write a tokenized corpus as a cache directory (atomically; a concurrent writer's copy wins)."""
    with atomic_path(path, directory=True, exists="keep") as tmp:  # a concurrent job's copy (a sweep's) is kept
        (tmp / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
        for name, docs in parts.items():
            np.save(tmp / f"{name}.ids.npy", docs.ids)
            np.save(tmp / f"{name}.offsets.npy", docs.offsets)
            (tmp / f"{name}.labels.json").write_text(json.dumps(docs.labels, ensure_ascii=False), encoding="utf-8")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")


def open_cached(path: Path) -> TokenizedCorpus:
    """A cache directory's corpus, token arrays memory-mapped."""
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    tokens = json.loads((path / "tokens.json").read_text(encoding="utf-8"))
    parts = {name: Docs(np.load(path / f"{name}.ids.npy", mmap_mode="r"),
                        np.load(path / f"{name}.offsets.npy"),
                        json.loads((path / f"{name}.labels.json").read_text(encoding="utf-8")))
             for name in meta["parts"]}
    # the fingerprint (not the folder's name, which a SentencePiece corpus extends) is what lineage records
    return TokenizedCorpus(path, meta.get("fingerprint", path.name), tokens, parts,
                           tokenizer=meta.get("tokenized_with", {"kind": subword.SPACY}))


def sentencepiece_model(reader: Any, settings: TokenizerSettings, parts: Sequence[str], vocab_size: int | None,
                        cache_dir: str | os.PathLike) -> Path:
    """A SentencePiece model trained on the texts of ``parts`` (those the reader has) with ``vocab_size`` pieces
    (``ulmfit.data.subword.train_model``, for ``settings.lang``), cached beside the token cache by its inputs: the
    corpus's fingerprint, the parts, the size and sentencepiece's version. A second run (a sweep's job, a resumed
    run) reuses it."""
    key, _ = fingerprint(reader, settings)
    inputs = {"fingerprint": key, "parts": list(parts), "vocab_size": vocab_size,
              "sentencepiece": subword.sentencepiece_version()}
    folder = Path(cache_dir).expanduser() / "sentencepiece" / hashlib.sha256(
        json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]
    if (folder / subword.SP_MODEL).is_file():
        return folder / subword.SP_MODEL
    raw = reader.read()
    texts = [t for p in parts if p in raw for t in raw[p]["text"].tolist()]
    if not texts:
        raise UsageError(f"No texts to train a SentencePiece model on: the corpus has none of the parts {list(parts)} "
                         f"(it has {list(raw)}).")
    t0 = time.perf_counter()
    with atomic_path(folder, directory=True, exists="keep") as tmp:  # a concurrent job's model is kept
        subword.train_model(texts, vocab_size, tmp, settings.lang)
        (tmp / "meta.json").write_text(json.dumps({**inputs, "texts": len(texts),
                                                   "seconds": round(time.perf_counter() - t0, 2)}, indent=2))
    log.info("Trained a SentencePiece model on %d texts of %s in %.1fs: %s", len(texts), list(parts),
             time.perf_counter() - t0, folder)
    return folder / subword.SP_MODEL


# ---------------------------------------------------------------------------------------------------
def build_vocab(corpus: TokenizedCorpus, parts: Iterable[str], max_vocab: int, min_freq: int,
                docs: Sequence[int] | None = None) -> list[str]:
    """fastai's ``make_vocab`` on the token counts of ``parts`` (or of their documents ``docs``): special
    tokens first, padded to a multiple of 8."""
    return make_vocab(corpus.counts(parts, docs), min_freq=min_freq, max_vocab=max_vocab)


def with_parent_words(vocab: list[str], counts: Counter, parent_vocab: Sequence[str], keep: str) -> list[str]:
    """``vocab`` (the target corpus's frequent tokens) plus words the parent LM already has embeddings for:
    ``seen`` adds those that occur in the target texts at all (below ``min_freq``), ``all`` every one; ``none``
    leaves it as fastai builds it. A word dropped for rarity becomes ``xxunk`` in training and at prediction,
    although the pretrained LM knows it: on a few thousand short texts many of the words that carry the label
    are that rare. Padded to a multiple of 8 again, as fastai's ``make_vocab`` does."""
    if keep not in PARENT_VOCAB:
        raise UsageError(f"stage.parent_vocab={keep!r}; use one of {', '.join(PARENT_VOCAB)}.")
    if keep == "none":
        return vocab
    have = {t for t in vocab if t != "xxfake"}
    extra = [t for t in parent_vocab if t not in have and t != "xxfake" and (keep == "all" or counts.get(t, 0) > 0)]
    out = [t for t in vocab if t != "xxfake"] + extra
    return out + ["xxfake"] * (-len(out) % 8)


def numericalize(corpus: TokenizedCorpus, part: str, vocab: Sequence[str]) -> Docs:
    """Map a part's cached ids to ``vocab`` ids (unknown tokens -> ``xxunk``), as int64 for PyTorch."""
    docs = corpus.part(part)
    return Docs(vocab_lookup(corpus.tokens, vocab)[docs.ids], np.asarray(docs.offsets), list(docs.labels))


def vocab_lookup(tokens: Sequence[str], vocab: Sequence[str]) -> np.ndarray:
    """Token id -> ``vocab`` id, for ids into ``tokens`` (a corpus's cached tokens, or ``TokenIds.words``):
    tokens outside the vocab -> 0, ``xxunk``."""
    if vocab[0] != UNK:
        raise UsageError(f"Vocabulary must start with {UNK}; got {vocab[0]!r}. The store entry's vocab.json is corrupted.")
    index = {t: i for i, t in enumerate(vocab)}
    return np.fromiter((index.get(t, 0) for t in tokens), dtype=np.int64, count=len(tokens))
