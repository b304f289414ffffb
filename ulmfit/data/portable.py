"""Portable tokenized corpora: one compact file that carries a token cache to a machine without spaCy or the raw data.

Tokenize once on a CPU box (``python -m ulmfit stage=export_tokens ...``), copy the file, and on a GPU node (or
any cluster node) read it with ``data.tokens=<file>``: ``load_corpus`` unpacks it into the token cache under the
exported corpus's fingerprint, memory-mapped like any cache hit, so every stage works unchanged, lineage matches
a run that tokenized the raw files, and a second load is an ordinary cache hit.

The file is a zip archive whose members are LZMA-compressed (``unzip -l`` lists them; ``numpy.load`` reads the
``.npy`` members)::

    portable.json          format, version, fingerprint, the cache's meta.json, per-part sizes, subset (or null)
    tokens.json            the distinct tokens, most frequent first: index = stored id
    <part>.ids.npy         uint16 stored ids; ESCAPE (65535) stands for an id >= 65535 ...
    <part>.overflow.npy    uint32 ... the escaped ids, in order of occurrence (empty when the tokens fit uint16)
    <part>.lengths.npy     uint32 tokens per document
    <part>.labels.json     one label per document ("" = unlabelled)

Nothing is dropped: ids above the uint16 range are escaped rather than mapped to ``xxunk``, so the unpacked
corpus equals the cache token for token (same token list, ids, labels, counts), whatever vocabulary a run
builds or brings (a parent LM's vocabulary can hold tokens that are rare in this corpus). Ordering ids by
frequency keeps nearly every occurrence below the escape (only rare tokens are past it) and compresses better;
LZMA is the archive's compression because it gives the smallest files (``experiments/portable_tokens.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ulmfit.data.readers import READERS
from ulmfit.data.streams import TokenStream, within_budget
from ulmfit.data.tokens import COUNT_CHUNK, Docs, TokenizedCorpus, open_cached, save_cached
from ulmfit.errors import UsageError
from ulmfit.files import atomic_path

log = logging.getLogger(__name__)

FORMAT = "ulmfit-portable-tokens"
VERSION = 1      # bump when the members or their meaning change; readers refuse newer files
SUFFIX = ".tokens"  # e.g. imdb.tokens; a zip archive inside (see above)
ESCAPE = 0xFFFF  # the uint16 id that says "the real id is the next one in <part>.overflow.npy"
HEADER = "portable.json"
EXPORT_HINT = "python -m ulmfit stage=export_tokens data=<its data config> stage.output=<file>"


# ---------------------------------------------------------------------------------------------------
def budget_docs(docs: Docs, max_tokens: int, seed: int) -> np.ndarray:
    """Indices of the documents of ``docs`` that ``stage.lm_tokens=max_tokens`` selects in pretrain (a seeded
    subset of whole documents, ``ulmfit.data.streams.within_budget``), for a corpus with its own valid part."""
    # A stream over document indices rather than token offsets: sampling only looks at lengths, and the
    # starts of the chosen documents are then their indices.
    stream = TokenStream(sources=[docs.ids], source=np.zeros(len(docs), dtype=np.int16),
                         starts=np.arange(len(docs), dtype=np.int64), lengths=docs.lengths.astype(np.int64),
                         lookup=np.zeros(0, dtype=np.int64))
    return within_budget(stream, max_tokens, seed).starts


def subset_fingerprint(source: str, part: str, max_tokens: int, seed: int) -> str:
    """A token-budget subset is another corpus: its own key, derived from the source's and the selection."""
    key = json.dumps({"of": source, "part": part, "max_tokens": max_tokens, "seed": seed}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _frequency_order(parts: Mapping[str, Docs], n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(cached ids, most frequent first, of the tokens that occur; cached id -> stored id, -1 if absent)."""
    counts = np.zeros(n_tokens, dtype=np.int64)
    for docs in parts.values():
        ids = docs.ids[docs.offsets[0]:docs.offsets[-1]]
        for i in range(0, len(ids), COUNT_CHUNK):  # bounded RAM on memory-mapped parts
            counts += np.bincount(ids[i:i + COUNT_CHUNK], minlength=n_tokens)
    order = np.argsort(-counts, kind="stable")  # ties keep the cache's (sorted) order
    order = order[counts[order] > 0]
    stored = np.full(n_tokens, -1, dtype=np.int64)
    stored[order] = np.arange(len(order))
    return order, stored


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.compress_type = zipfile.ZIP_LZMA
    return info


def _write_array(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with zf.open(_member(name), "w", force_zip64=True) as fh:
        np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False)


def _write_json(zf: zipfile.ZipFile, name: str, value: Any) -> None:
    zf.writestr(name, json.dumps(value, ensure_ascii=False))


def _write_ids(zf: zipfile.ZipFile, name: str, docs: Docs, stored: np.ndarray) -> np.ndarray:
    """Write a part's ids as uint16 with escapes (streamed chunk by chunk); return the escaped ids."""
    ids = docs.ids[docs.offsets[0]:docs.offsets[-1]]
    overflow = []
    with zf.open(_member(name), "w", force_zip64=True) as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": np.dtype(np.uint16).str, "fortran_order": False,
                                                  "shape": (len(ids),)})
        for i in range(0, len(ids), COUNT_CHUNK):
            chunk = stored[ids[i:i + COUNT_CHUNK]]
            overflow.append(chunk[chunk >= ESCAPE].astype(np.uint32))
            fh.write(np.minimum(chunk, ESCAPE).astype(np.uint16).tobytes())
    return np.concatenate(overflow) if overflow else np.zeros(0, dtype=np.uint32)


def export_corpus(corpus: TokenizedCorpus, output: str | os.PathLike, parts: Sequence[str] | None = None,
                  max_tokens: int | None = None, seed: int = 42) -> dict[str, Any]:
    """Write ``corpus`` (its ``parts``, default all) as a portable file at ``output``; return its header.

    ``max_tokens`` keeps only the documents of the train part that pretrain's ``stage.lm_tokens`` would train on
    (same ``seed``), so a slice of a large pretraining corpus can be shipped; the subset gets its own fingerprint."""
    t0 = time.perf_counter()
    names = list(corpus.parts) if parts is None else list(parts)
    selected = {name: corpus.part(name) for name in names}
    meta = json.loads((corpus.path / "meta.json").read_text(encoding="utf-8"))
    meta.pop("portable", None)  # re-exporting an unpacked portable corpus: where it came from is not this file
    fingerprint, subset = corpus.fingerprint, None
    if max_tokens is not None:
        if "train" not in selected:
            raise UsageError(f"stage.max_tokens selects documents of the train part, which the export lacks "
                             f"(stage.parts={names}). Add train to stage.parts or set stage.max_tokens=null.")
        train = selected["train"]
        idx = budget_docs(train, max_tokens, seed)
        selected["train"] = train.subset(idx)
        fingerprint = subset_fingerprint(corpus.fingerprint, "train", max_tokens, seed)
        subset = {"of": corpus.fingerprint, "part": "train", "max_tokens": max_tokens, "seed": seed,
                  "docs": len(idx), "of_docs": len(train), "tokens": selected["train"].n_tokens,
                  "of_tokens": train.n_tokens}
    order, stored = _frequency_order(selected, len(corpus.tokens))
    sizes: dict[str, dict[str, int]] = {}
    path = Path(output).expanduser()
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_LZMA) as zf:
            _write_json(zf, "tokens.json", [corpus.tokens[i] for i in order])
            for name, docs in selected.items():
                lengths = docs.lengths
                if len(lengths) and lengths.max() >= 2 ** 32:
                    raise UsageError(f"A document of the {name} part has {lengths.max()} tokens, more than a portable "
                                     f"file holds (2**32 - 1). Split it into smaller documents.")
                overflow = _write_ids(zf, f"{name}.ids.npy", docs, stored)
                _write_array(zf, f"{name}.overflow.npy", overflow)
                _write_array(zf, f"{name}.lengths.npy", lengths.astype(np.uint32))
                _write_json(zf, f"{name}.labels.json", list(docs.labels) or [""] * len(docs))
                sizes[name] = {"docs": len(docs), "tokens": docs.n_tokens, "overflow": len(overflow)}
            meta = {**meta, "fingerprint": fingerprint, "parts": {n: {"docs": s["docs"], "tokens": s["tokens"]}
                                                                  for n, s in sizes.items()}}
            header = {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint, "parts": sizes,
                      "tokens": len(order), "ids": {"dtype": "uint16", "escape": ESCAPE, "order": "frequency"},
                      "subset": subset, "meta": meta}
            _write_json(zf, HEADER, header)
    log.info("Exported %s (%d tokens, %.1f MB) to %s in %.1fs", fingerprint,
             sum(s["tokens"] for s in sizes.values()), path.stat().st_size / 1e6, path, time.perf_counter() - t0)
    return header


# ---------------------------------------------------------------------------------------------------
def _bad(path: Path, problem: str) -> UsageError:
    return UsageError(f"data.tokens={path}: {problem}")


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The header of a portable file, checked: the format, a version this code reads, every part's members."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise _bad(path, f"no such file. Fix the path, or write the file with {EXPORT_HINT}.")
    if not zipfile.is_zipfile(path):
        raise _bad(path, f"not a portable token file (not a zip archive). Write one with {EXPORT_HINT}.")
    try:
        with zipfile.ZipFile(path) as zf:
            members = set(zf.namelist())
            if HEADER not in members:
                raise _bad(path, f"a zip archive without {HEADER}, so not a portable token file. Write one with "
                                 f"{EXPORT_HINT}.")
            header = json.loads(zf.read(HEADER))
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:  # lzma errors are OSError/EOFError
        raise _bad(path, f"the file is damaged or incomplete ({e}). Copy it again, or export it again with "
                         f"{EXPORT_HINT}.") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _bad(path, f"{HEADER} does not describe a {FORMAT} file. Write one with {EXPORT_HINT}.")
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise _bad(path, f"format version {version!r}, but this ulmfit reads versions up to {VERSION}. Update "
                         f"ulmfit here, or export the corpus again with this version.")
    parts = header.get("parts")
    if not isinstance(parts, dict) or not parts:
        raise _bad(path, f"the file lists no corpus parts. Export it again with {EXPORT_HINT}.")
    if not isinstance(header.get("meta"), dict) or not isinstance((header.get("ids") or {}).get("escape"), int) \
            or not isinstance(header.get("fingerprint"), str):
        raise _bad(path, f"{HEADER} lacks its fingerprint, meta or id encoding (the file is damaged). Export it "
                         f"again with {EXPORT_HINT}.")
    missing = [f"{p}.{m}" for p in parts for m in ("ids.npy", "overflow.npy", "lengths.npy", "labels.json")
               if f"{p}.{m}" not in members] + (["tokens.json"] if "tokens.json" not in members else [])
    if missing:
        raise _bad(path, f"members {', '.join(missing)} are missing (the file is incomplete). Copy it again, or "
                         f"export it again with {EXPORT_HINT}.")
    return header


def check_matches(header: Mapping[str, Any], path: str | os.PathLike, data_cfg: Mapping[str, Any]) -> None:
    """The file must hold the kind of corpus ``data_cfg`` describes (its reader, and the parts it names)."""
    fmt = data_cfg["format"]
    reader = header["meta"].get("reader")
    if fmt in READERS and reader != READERS[fmt].__name__:
        kinds = {cls.__name__: f for f, cls in READERS.items()}
        raise _bad(Path(path), f"the file holds a {kinds.get(reader, reader)} corpus, but data.format is {fmt}. "
                               f"Choose the data config it was exported with (data=<config> with format "
                               f"{kinds.get(reader, reader)}).")
    if missing := [p for p in (data_cfg.get("parts") or []) if p not in header["parts"]]:  # only imdb names parts
        raise _bad(Path(path), f"the file lacks the parts {missing} that data.parts names (it has "
                               f"{list(header['parts'])}). Set data.parts={list(header['parts'])}, or export "
                               f"them too.")


def _read_array(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    with zf.open(name) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def _unpack(path: Path, header: Mapping[str, Any]) -> tuple[list[str], dict[str, Docs]]:
    """The corpus as the token cache holds it: tokens sorted, ids into that list."""
    with zipfile.ZipFile(path) as zf:
        by_frequency = json.loads(zf.read("tokens.json"))
        tokens = sorted(by_frequency)  # the cache's order (``load_or_tokenize`` sorts its token list)
        position = {t: i for i, t in enumerate(tokens)}
        to_cached = np.fromiter((position[t] for t in by_frequency), dtype=np.int32, count=len(by_frequency))
        parts = {}
        escape = header["ids"]["escape"]  # the writer's: tests write files with a smaller one
        for name in header["parts"]:
            stored = _read_array(zf, f"{name}.ids.npy")
            overflow = _read_array(zf, f"{name}.overflow.npy")
            escaped = stored == escape
            if int(escaped.sum()) != len(overflow):
                raise _bad(path, f"the {name} part's escaped ids do not match its overflow list (the file is "
                                 f"damaged). Copy it again or export it again.")
            ids = stored.astype(np.int32)
            ids[escaped] = overflow
            lengths = _read_array(zf, f"{name}.lengths.npy").astype(np.int64)
            labels = json.loads(zf.read(f"{name}.labels.json"))
            if int(lengths.sum()) != len(ids) or len(labels) != len(lengths) or (len(ids) and ids.max() >= len(tokens)):
                raise _bad(path, f"the {name} part's ids, lengths and labels disagree (the file is damaged). "
                                 f"Copy it again or export it again.")
            parts[name] = Docs(to_cached[ids], np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), labels)
    return tokens, parts


def open_portable(path: str | os.PathLike, cache_dir: str | os.PathLike,
                  data_cfg: Mapping[str, Any] | None = None) -> TokenizedCorpus:
    """The corpus of a portable file, via the token cache: unpacked there under its fingerprint on first use
    (then memory-mapped), a cache hit afterwards. ``data_cfg``: check the file holds that kind of corpus."""
    t0 = time.perf_counter()
    path = Path(path).expanduser()
    header = read_header(path)
    if data_cfg is not None:
        check_matches(header, path, data_cfg)
    target = Path(cache_dir).expanduser() / header["fingerprint"]
    if (target / "meta.json").is_file():
        corpus = open_cached(target)
        corpus.cache_hit, corpus.seconds = True, time.perf_counter() - t0
        log.info("Token cache hit %s for %s (%.1fs)", target, path, corpus.seconds)
        return corpus
    tokens, parts = _unpack(path, header)
    meta = {**header["meta"], "portable": {"file": str(path.resolve()), "version": header["version"],
                                           "subset": header.get("subset"),
                                           "unpack_seconds": round(time.perf_counter() - t0, 2)}}
    save_cached(target, tokens, parts, meta)
    del parts
    corpus = open_cached(target)
    corpus.seconds = time.perf_counter() - t0
    log.info("Unpacked %s into the token cache %s in %.1fs", path, target, corpus.seconds)
    return corpus


def portable_fingerprint(path: str | os.PathLike) -> str:
    """The fingerprint of the corpus a portable file holds (its header only; nothing is unpacked)."""
    return read_header(path)["fingerprint"]


def describe(header: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """(key, value) rows of a header for a printed summary."""
    yield "fingerprint", header["fingerprint"]
    yield "distinct_tokens", header["tokens"]
    for name, s in header["parts"].items():
        yield f"{name}_docs", s["docs"]
        yield f"{name}_tokens", s["tokens"]
        yield f"{name}_escaped_ids", s["overflow"]
    if header.get("subset"):
        yield "subset_of", header["subset"]["of"]
