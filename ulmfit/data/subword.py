"""SentencePiece subwords (``data.tokenizer=sentencepiece``) with fastai's ``SentencePieceTokenizer``.

fastai's rules (fix_html, ..., replace_maj, lowercase) run first, as for spaCy words; the model then splits what they
leave into pieces (``▁xxmaj``, ``▁the``, ``s``; fastai's special tokens stay whole). A model is trained where a
vocabulary is built from scratch (``pretrain``'s train text, or that of a stage without a parent: ``lm_finetune`` or
``classify`` with no parent LM, the baselines), kept in that stage's store entry as ``spm.model`` (so its manifest
lists it), and copied into every entry made from it: a child stage tokenizes with its parent's model, predict and
evaluate with the classifier's. The token cache keys a corpus by the model's sha256 (``ulmfit.data.tokens``).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from fastai.text.core import SentencePieceTokenizer, TokenizeWithRules, defaults

from ulmfit.data.tokenizer import TokenIds
from ulmfit.errors import UsageError
from ulmfit.options import TOKENIZERS

if TYPE_CHECKING:
    from ulmfit.store import Entry

SPACY, SENTENCEPIECE = TOKENIZERS
SP_MODEL = "spm.model"  # the model's file name, in a store entry and in the cache (fastai's name for it)
BUILT_ON = {SPACY: "spaCy words", SENTENCEPIECE: "SentencePiece subwords"}
NOT_PORTABLE = (f"data.tokenizer={SENTENCEPIECE}: portable token files (data.tokens, stage=export_tokens) hold spaCy "
                f"words only; read the raw files, or use data.tokenizer={SPACY}.")


def sentencepiece_version() -> str:
    """The installed sentencepiece's version (part of the token cache's key), without importing it."""
    try:
        return importlib.metadata.version("sentencepiece")
    except importlib.metadata.PackageNotFoundError:
        raise UsageError("data.tokenizer=sentencepiece needs the sentencepiece package: pip install sentencepiece "
                         "(or reinstall ulmfit, which depends on it).") from None


def train_model(texts: Sequence[str], vocab_size: int | None, folder: Path, lang: str = "en") -> Path:
    """Train fastai's ``SentencePieceTokenizer`` (unigram) on ``texts`` after fastai's rules, into
    ``folder/spm.model``; ``vocab_size`` None: fastai's choice (a quarter of the distinct words, at most 30,000);
    ``lang`` (``tokenizer.lang``) sets fastai's character coverage (all characters for European languages)."""
    sentencepiece_version()
    tok = SentencePieceTokenizer(lang=lang, vocab_sz=vocab_size, cache_dir=folder)
    try:
        tok.setup(list(texts), rules=defaults.text_proc_rules)
    except RuntimeError as e:  # the one failure a setting causes: fewer pieces than the texts have characters
        if "Vocabulary size is smaller" not in str(e):
            raise
        raise UsageError(f"data.sp_vocab_size={vocab_size} is too small for these texts "
                         f"({str(e).partition('] ')[2].split('.')[0]}): raise it.") from None
    (folder / "spm.vocab").unlink(missing_ok=True)  # a readable copy of the pieces; the model holds them
    return folder / SP_MODEL


def tokenize_ids(texts: Sequence[str], sp_model: Path, index: dict[str, int] | None = None) -> TokenIds:
    """fastai's tokens of ``texts`` with this model (``TokenizeWithRules``: its rules, the pieces, its post-rules),
    in order, as ids into ``index`` (token -> id, extended in place, so corpus parts share one id space)."""
    sentencepiece_version()
    # cache_dir: fastai creates it even when it only loads a model; the model's own folder exists already
    tok = TokenizeWithRules(SentencePieceTokenizer(sp_model=sp_model, cache_dir=Path(sp_model).parent))
    index = {} if index is None else index
    ids = [np.fromiter((index.setdefault(p, len(index)) for p in pieces), dtype=np.int32, count=len(pieces))
           for pieces in tok(list(texts))]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)
    return TokenIds(list(index), flat, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def tokenizer_of(entry: "Entry") -> str:
    """What an entry's model reads (its lineage's ``data.tokenizer``): spaCy words for the shipped and imported LMs
    and entries written before the option."""
    return ((entry.lineage.get("data") or {}).get("tokenizer") or {}).get("kind", SPACY)


def check_tokenizer(parent: "Entry", kind: str) -> None:
    """Stop when ``parent`` was built with another tokenizer than this run's ``data.tokenizer``."""
    theirs = tokenizer_of(parent)
    if theirs != kind:
        raise UsageError(f"{parent.ref} is built on {BUILT_ON[theirs]} but this run has data.tokenizer={kind}: set "
                         f"data.tokenizer={theirs}, or pick a parent built with {kind} (stage.parent=<name>; "
                         f"stage=pretrain data.tokenizer={kind} makes one).")


def model_of(entry: "Entry") -> Path | None:
    """The SentencePiece model an entry's tokens come from (checked against its manifest); None for spaCy words."""
    if tokenizer_of(entry) != SENTENCEPIECE:
        return None
    entry.verify(SP_MODEL)
    if not (entry.path / SP_MODEL).is_file():
        raise UsageError(f"Store entry {entry.ref} is damaged: its lineage names a SentencePiece model but {SP_MODEL} "
                         f"is missing. Re-run stage={entry.stage} run_name={entry.name} to recreate it.")
    return entry.path / SP_MODEL
