"""Regenerate the embedded sample in ulmfit/sample_data/ from the full datasets.

    python -m experiments.make_sample --shared ../shared/data

WikiText-2: the first articles of train/valid/test (cut at article boundaries, original format).
IMDB: a seeded, label-balanced random draw of train/test reviews plus unlabelled ones (same CSV form).
TREC-6: both files whole, byte for byte (the quickstart's task).
"""

from __future__ import annotations

import argparse
import lzma
import re
from pathlib import Path

import pandas as pd

from experiments.common import REPO, SHARED_DATA
from ulmfit.data.readers import open_text

OUT = REPO / "ulmfit" / "sample_data"
HEADING = re.compile(r"^ = [^=].* = $")


def head_articles(src: Path, max_chars: int) -> str:
    lines, size = [], 0
    with open_text(src) as fh:
        for line in fh:
            if HEADING.match(line.rstrip("\n")) and size >= max_chars:
                break
            lines.append(line)
            size += len(line)
    return "".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=SHARED_DATA)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    wt = OUT / "wikitext-2"
    wt.mkdir(parents=True, exist_ok=True)
    for split, src, chars in [("train", "wiki.train.tokens.xz", 700_000), ("valid", "wiki.valid.tokens", 70_000),
                              ("test", "wiki.test.tokens", 70_000)]:
        text = head_articles(args.shared / "wikitext-2" / src, chars)
        with lzma.open(wt / f"wiki.{split}.tokens.xz", "wt", encoding="utf-8", preset=9) as fh:
            fh.write(text)

    imdb = OUT / "imdb"
    imdb.mkdir(parents=True, exist_ok=True)
    for part, n in [("train", 1000), ("test", 1000), ("unsup", 1000)]:
        df = pd.read_csv(args.shared / "imdb" / f"{part}.csv.xz", keep_default_na=False, dtype=str)
        if part == "unsup":
            sample = df.sample(n=n, random_state=args.seed)
        else:  # balanced
            sample = df.groupby("label", group_keys=False).sample(n=n // 2, random_state=args.seed)
        sample = sample.sample(frac=1.0, random_state=args.seed)  # mix labels
        sample.to_csv(imdb / f"{part}.csv.xz", index=False, compression={"method": "xz", "preset": 9})

    trec = OUT / "trec"
    trec.mkdir(parents=True, exist_ok=True)
    for name in ("train_5500.label", "TREC_10.label"):
        (trec / f"{name}.xz").write_bytes(lzma.compress((args.shared / "trec" / name).read_bytes(), preset=9))
    for f in sorted(OUT.rglob("*.xz")):
        print(f"{f.relative_to(OUT)}: {f.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
