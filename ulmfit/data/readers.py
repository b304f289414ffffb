"""Readers: one per source format, all returning the same thing.

Every reader exposes ``files()`` (the inputs, fingerprinted by the token cache so a cache hit never reads
them) and ``read()``, which returns ``{part: DataFrame}`` with two string columns, ``text`` and ``label``
(``""`` where a text has no label, e.g. IMDB's unlabelled reviews). Parts are the splits the source
ships (``train``, ``valid``, ``test``, ``unsup``); held-out splits are carved later, on token ids.

Formats:
- ``wikitext``: ``wiki.{train,valid,test}.tokens`` (plain or ``.xz``), or fastai's ``train.csv``/``test.csv``
  (what ``untar_data(URLs.WIKITEXT)`` unpacks to); one document per article.
- ``imdb``: the official ``aclImdb/`` tree (what ``untar_data(URLs.IMDB)`` gives) or ``{train,test,unsup}.csv[.xz]``
  with ``text,label`` columns.
- ``csv``: any CSV/TSV (optionally compressed) with configurable text and label columns; several text columns are
  joined into one text with fastai's field markers (``xxfld 1 <title> xxfld 2 <body>``, as ``tokenize_df`` does).
- ``trec``: ``train_5500.label`` / ``TREC_10.label`` (``COARSE:fine text``; latin-1, line 66 of the
  training file has a non-UTF-8 byte).
"""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Sequence

import pandas as pd
from fastai.text.core import UNK, _join_texts

from ulmfit.errors import UsageError
from ulmfit.tasks import Task

log = logging.getLogger(__name__)

Parts = dict[str, pd.DataFrame]
_OPENERS: dict[str, Callable[..., IO[str]]] = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}


def open_text(path: str | os.PathLike, encoding: str = "utf-8") -> IO[str]:
    """Open a plain or compressed (.xz/.gz/.bz2, by suffix) text file for reading."""
    path = Path(path)
    return _OPENERS.get(path.suffix, open)(path, "rt", encoding=encoding)


def find_file(root: Path, stem: str, required: bool = True) -> Path | None:
    """``root/stem`` or a compressed variant of it."""
    for suffix in ("", ".xz", ".gz", ".bz2"):
        if (p := root / f"{stem}{suffix}").is_file():
            return p
    if required:
        raise UsageError(f"{root} has no {stem} (nor {stem}.xz/.gz/.bz2). Point data.root at the folder "
                         f"that holds it.")
    return None


def _frame(texts: list[str], labels: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "label": labels if labels is not None else [""] * len(texts)})


def _check_nonempty(parts: Parts, source: Any) -> Parts:
    for part, df in parts.items():
        if len(df) == 0 or not df["text"].str.strip().any():
            raise UsageError(f"The '{part}' part of {source} has no text. Check the file (is it empty or "
                             f"is the text column blank?).")
    return parts


# ---------------------------------------------------------------------------------------------------
@dataclass
class WikiTextReader:
    """WikiText-2/103 in the original token-file form or fastai's CSV form."""

    root: Path

    _HEADING = re.compile(r"^ = [^=].* = $")  # a top-level heading starts a new article

    def files(self) -> list[Path]:
        if find_file(self.root, "wiki.train.tokens", required=False):
            return [find_file(self.root, f"wiki.{s}.tokens") for s in ("train", "valid", "test")]
        if find_file(self.root, "train.csv", required=False):
            return [p for s in ("train", "test") if (p := find_file(self.root, f"{s}.csv", s == "train"))]
        raise UsageError(f"{self.root} holds neither wiki.{{train,valid,test}}.tokens[.xz] nor fastai's "
                         f"train.csv: point data.root at a WikiText folder.")

    def read(self) -> Parts:
        files = self.files()
        if files[0].name.startswith("wiki."):
            parts = {f.name.split(".")[1]: _frame(self.articles(f)) for f in files}
        else:  # fastai's form: one article per row, no header, no validation split
            parts = {f.name.split(".")[0]: _frame(
                pd.read_csv(f, header=None, dtype=str, keep_default_na=False)[0].map(self._clean).tolist())
                for f in files}
        return _check_nonempty(parts, self.root)

    @staticmethod
    def _clean(text: str) -> str:
        # WikiText marks OOV words as <unk>; map it to fastai's UNK so the tokenizer keeps it as one token.
        return text.replace("<unk>", UNK).strip()

    @classmethod
    def articles(cls, path: Path) -> list[str]:
        """Split a wiki.*.tokens file into articles (paragraphs joined by newlines)."""
        docs: list[list[str]] = []
        with open_text(path) as fh:
            for line in fh:
                line = line.rstrip("\n")
                if cls._HEADING.match(line) or not docs:
                    docs.append([])
                if line.strip():
                    docs[-1].append(cls._clean(line))
        return ["\n".join(d) for d in docs if d]


# ---------------------------------------------------------------------------------------------------
@dataclass
class ImdbReader:
    """IMDB Large Movie Review v1.0, as the aclImdb tree or as train/test/unsup CSVs."""

    root: Path
    parts: tuple[str, ...] = ("train", "test", "unsup")

    def _tree(self) -> Path | None:
        for cand in (self.root, self.root / "aclImdb", self.root / "imdb"):
            if (cand / "train" / "pos").is_dir():
                return cand
        return None

    def files(self) -> list[Path]:
        if tree := self._tree():
            return [f for part in self.parts for folder, _ in self._folders(tree, part)
                    for f in self._sorted_reviews(folder)]
        return [find_file(self.root, f"{part}.csv") for part in self.parts]

    @staticmethod
    def _folders(tree: Path, part: str) -> list[tuple[Path, str]]:
        """(folder, label) pairs of a part; the unlabelled reviews live in train/unsup."""
        return [(tree / "train" / "unsup", "")] if part == "unsup" else [(tree / part / lab, lab) for lab in ("pos", "neg")]

    @staticmethod
    def _sorted_reviews(folder: Path) -> list[Path]:
        if not folder.is_dir():
            raise UsageError(f"IMDB folder {folder} is missing: data.root must be the aclImdb tree "
                             f"(train/pos, train/neg, test/..., train/unsup) or hold train/test/unsup CSVs.")
        # <id>_<rating>.txt, ordered by numeric id like the shipped CSVs
        return sorted(folder.glob("*.txt"), key=lambda p: int(p.stem.split("_")[0]))

    def read(self) -> Parts:
        if tree := self._tree():
            parts = {}
            for part in self.parts:
                texts, labels = [], []
                for folder, label in self._folders(tree, part):
                    for f in self._sorted_reviews(folder):
                        texts.append(f.read_text(encoding="utf-8"))
                        labels.append(label)
                parts[part] = _frame(texts, labels)
            return _check_nonempty(parts, tree)
        files = {part: find_file(self.root, f"{part}.csv") for part in self.parts}
        return _check_nonempty({part: read_table(f, "text", "label", labelled=part != "unsup")
                                for part, f in files.items()}, self.root)


# ---------------------------------------------------------------------------------------------------
Columns = Sequence[str | int]


def text_columns(option: str | int | Columns) -> tuple[str | int, ...]:
    """``data.text_cols`` (or ``stage.text_cols``) as a tuple: one column name, or a list of them."""
    return tuple(option) if isinstance(option, Sequence) and not isinstance(option, str) else (option,)


def read_table(path: Path, text_cols: str | int | Columns, label_col: str | int | None, *, labelled: bool = True,
               sep: str | None = None, header: bool = True, encoding: str = "utf-8",
               keep: Sequence[str | int] = (), options: str = "data.text_cols / data.label_col") -> pd.DataFrame:
    """Read one CSV/TSV (compression inferred from the suffix) into ``text``/``label`` columns, plus the columns
    ``keep`` unchanged as ``input.<column>`` (e.g. an id to carry into predictions). Several ``text_cols`` are joined
    as fastai's ``tokenize_df`` joins them (``_join_texts``: ``xxfld 1 <first> xxfld 2 <second> ...``); one column
    is read as it is. ``options``: what the user sets to name other columns, for the message."""
    if not path.is_file():
        raise UsageError(f"Data file {path} does not exist. Fix the path in the data config.")
    if sep is None:
        sep = "\t" if ".tsv" in path.suffixes else ","
    try:
        df = pd.read_csv(path, sep=sep, header=0 if header else None, dtype=str, keep_default_na=False,
                         encoding=encoding)
    except pd.errors.EmptyDataError:
        raise UsageError(f"Data file {path} is empty.") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not valid {encoding} ({e.reason} at byte {e.start}). Set "
                         f"data.encoding (e.g. latin-1) to the file's encoding.") from None
    except (pd.errors.ParserError, EOFError, lzma.LZMAError, OSError) as e:
        raise UsageError(f"Cannot parse {path}: {e}. Check data.sep and that the file is a complete "
                         f"CSV/TSV.") from None
    if not header:
        df.columns = list(range(df.shape[1]))
    text_cols = text_columns(text_cols)
    missing = [c for c in (*text_cols, label_col if labelled else None) if c is not None and c not in df.columns]
    if missing:
        raise UsageError(f"{path} has no column {missing[0]!r} (columns: {list(df.columns)}). Set "
                         f"{options} to the right names.")
    if unknown := [c for c in keep if c not in df.columns]:
        raise UsageError(f"{path} has no column {unknown[0]!r} to keep (columns: {list(df.columns)}). Fix "
                         f"stage.keep_columns.")
    labels = df[label_col].str.strip().tolist() if labelled and label_col is not None else None
    if labels is not None and (bad := [i for i, lab in enumerate(labels) if lab == ""]):
        raise UsageError(f"{path} has {len(bad)} rows without a label (first data rows: {bad[:5]}). Fill or "
                         f"drop them, or read the file as unlabelled.")
    texts = df[text_cols[0]] if len(text_cols) == 1 else _join_texts(df[list(text_cols)], mark_fields=True)
    out = _frame(list(texts), labels)
    for c in keep:
        out[f"input.{c}"] = df[c].tolist()
    return out


@dataclass
class CsvReader:
    """Any CSV/TSV files, one per part, e.g. ``{train: a.csv, test: b.csv, unsup: c.csv.gz}``."""

    files_by_part: Mapping[str, str | Path | None]
    text_cols: tuple[str | int, ...] = ("text",)  # several: joined with fastai's field markers (read_table)
    label_col: str | int | None = "label"
    sep: str | None = None
    header: bool = True
    encoding: str = "utf-8"
    unlabelled_parts: tuple[str, ...] = ("unsup",)
    task: Task = Task()  # how labels are read: checked here, before tokenizing; not part of the cache's key

    def _paths(self) -> dict[str, Path]:
        paths = {part: Path(p).expanduser() for part, p in self.files_by_part.items() if p}
        if "train" not in paths:
            raise UsageError("The csv data config needs data.files.train=<path to a CSV/TSV file>.")
        return paths

    def files(self) -> list[Path]:
        return list(self._paths().values())

    def read(self) -> Parts:
        parts = {part: read_table(path, self.text_cols, self.label_col, labelled=part not in self.unlabelled_parts,
                                  sep=self.sep, header=self.header, encoding=self.encoding)
                 for part, path in self._paths().items()}
        for part, path in self._paths().items():
            if part not in self.unlabelled_parts:
                self.task.check_rows(parts[part]["label"].tolist(), str(path))
        return _check_nonempty(parts, "the csv data config")


# ---------------------------------------------------------------------------------------------------
@dataclass
class TrecReader:
    """TREC question classification: coarse (6) or fine (50) labels."""

    root: Path
    label: str = "coarse"

    _FILES = {"train": "train_5500.label", "test": "TREC_10.label"}

    def files(self) -> list[Path]:
        return [find_file(self.root, name) for name in self._FILES.values()]

    def read(self) -> Parts:
        if self.label not in ("coarse", "fine"):
            raise UsageError(f"data.label must be 'coarse' or 'fine', not {self.label!r}.")
        parts = {}
        for part, name in self._FILES.items():
            texts, labels = [], []
            # latin-1 decodes every byte: train_5500.label line 66 holds a raw 0xF0.
            with open_text(find_file(self.root, name), encoding="latin-1") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    tag, _, text = line.strip().partition(" ")
                    if ":" not in tag or not text:
                        raise UsageError(f"{name} line {lineno} is not 'COARSE:fine question': {line[:60]!r}.")
                    coarse, fine = tag.split(":", 1)
                    texts.append(text)
                    labels.append(coarse if self.label == "coarse" else f"{coarse}:{fine}")
            parts[part] = _frame(texts, labels)
        return _check_nonempty(parts, self.root)


# ---------------------------------------------------------------------------------------------------
def resolve_root(root: str | None, download: bool = False, url: str | None = None) -> Path:
    """The local data folder; downloads with fastai's ``untar_data`` only when explicitly allowed."""
    if root:
        path = Path(root).expanduser()
        if path.exists():
            return path
        if not download:
            raise UsageError(f"Data folder {path} does not exist. Set data.root=<folder with the data> "
                             f"(or data.download=true to fetch it with fastai, which needs a network).")
    if not download:
        raise UsageError("No data folder configured: set data.root=<folder>, or data.download=true to "
                         "fetch the dataset with fastai (needs a network).")
    if not url:
        raise UsageError("This dataset has no fastai download URL; set data.root to a local copy.")
    from fastai.data.external import URLs, untar_data
    log.info("Downloading %s with fastai untar_data", url)
    return Path(untar_data(getattr(URLs, url)))


READERS: dict[str, type] = {"csv": CsvReader, "wikitext": WikiTextReader, "imdb": ImdbReader, "trec": TrecReader}


def make_reader(data_cfg: Mapping[str, Any]) -> WikiTextReader | ImdbReader | CsvReader | TrecReader:
    """Build the reader a data config (conf/data/) asks for (``format`` picks the reader)."""
    fmt = data_cfg["format"]
    if fmt == "csv":
        return CsvReader(dict(data_cfg["files"]), text_cols=text_columns(data_cfg["text_cols"]),
                         label_col=data_cfg["label_col"],
                         sep=data_cfg["sep"], header=data_cfg["header"], encoding=data_cfg["encoding"],
                         unlabelled_parts=tuple(data_cfg["unlabelled_parts"]), task=Task.of_data(data_cfg))
    if fmt not in READERS:
        raise UsageError(f"Unknown data.format {fmt!r}; use one of: {', '.join(READERS)}.")
    root = resolve_root(data_cfg["root"], data_cfg["download"], data_cfg["url"])
    if fmt == "trec":
        return TrecReader(root, label=data_cfg["label"])
    if fmt == "imdb":
        return ImdbReader(root, parts=tuple(data_cfg["parts"]))
    return WikiTextReader(root)
