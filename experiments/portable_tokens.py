"""Why portable token files use LZMA: the size and decompression time of one cached part's ids under each of the
standard library's compressors, and the load time of a whole portable file (first load unpacks it into a token
cache, the second is a cache hit).

    python -m experiments.portable_tokens --cache <ULMFIT_HOME>/.cache/tokens/<fingerprint> --part train \\
        --file .gpu/corpora/imdb.tokens

The ids are encoded as the portable file stores them (uint16, most frequent token first, ids past 65534 escaped).
Run it on one core (``taskset -c 0``): the figures are single-threaded. Results: ``results/portable_tokens.md``.
"""

from __future__ import annotations

import argparse
import bz2
import lzma
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from experiments.common import append_result, hardware, stamp

METHODS = {  # name -> (compress, decompress)
    "zlib-6 (np.savez_compressed)": (lambda b: zlib.compress(b, 6), zlib.decompress),
    "bz2-9": (lambda b: bz2.compress(b, 9), bz2.decompress),
    "xz-6 (zip's LZMA)": (lambda b: lzma.compress(b, preset=6), lzma.decompress),
}


def encoded_ids(cache: Path, part: str) -> np.ndarray:
    """The part's ids as a portable file stores them (escape value included, overflow left out)."""
    from ulmfit.data.portable import ESCAPE, _frequency_order
    from ulmfit.data.tokens import open_cached
    corpus = open_cached(cache)
    docs = corpus.part(part)
    _, stored = _frequency_order({part: docs}, len(corpus.tokens))
    return np.minimum(stored[np.asarray(docs.ids)], ESCAPE).astype(np.uint16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True, help="a token cache folder (<cache>/<fingerprint>)")
    ap.add_argument("--part", default="train")
    ap.add_argument("--file", type=Path, help="a portable file to time loading")
    args = ap.parse_args()
    ids = encoded_ids(args.cache, args.part)
    raw = ids.tobytes()
    where = f"{args.cache.name}/{args.part}"
    for name, (compress, decompress) in METHODS.items():
        t0 = time.perf_counter()
        packed = compress(raw)
        t1 = time.perf_counter()
        assert decompress(packed) == raw
        t2 = time.perf_counter()
        row = {"what": f"{where}: {name}", "tokens": len(ids), "MB": round(len(packed) / 1e6, 2),
               "bytes_per_token": round(len(packed) / len(ids), 3), "compress_s": round(t1 - t0, 1),
               "decompress_s": round(t2 - t1, 2), "date": stamp()}
        print(row, flush=True)
        append_result("portable_tokens", row, "Portable token files: compression", DESCRIPTION, key="what")
    if args.file:
        sys.modules["spacy"] = None  # as on a GPU node: loading must not need it
        from ulmfit.data.portable import open_portable
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            corpus = open_portable(args.file, cache)
            t1 = time.perf_counter()
            assert open_portable(args.file, cache).cache_hit
            t2 = time.perf_counter()
        row = {"what": f"{args.file.name}: whole file", "tokens": sum(p.n_tokens for p in corpus.parts.values()),
               "MB": round(args.file.stat().st_size / 1e6, 2),
               "bytes_per_token": round(args.file.stat().st_size / sum(p.n_tokens for p in corpus.parts.values()), 3),
               "first_load_s": round(t1 - t0, 1), "second_load_s": round(t2 - t1, 2), "date": stamp()}
        print(row, flush=True)
        append_result("portable_tokens", row, "Portable token files: compression", DESCRIPTION, key="what")


DESCRIPTION = (f"`python -m experiments.portable_tokens` on one core of: {hardware()}. Per-part rows: that part's "
               "ids encoded as a portable file stores them, under each compressor. Whole-file rows: the file's size; "
               "first load = decompress and unpack into an empty token cache, second = the cache hit after it.")

if __name__ == "__main__":
    main()
