"""Classifier entries at inference time: load, tokenize new texts as the entry read its own, predict.

An entry reads the text columns it was trained on (its ``data.text_cols``, joined with fastai's field markers, unless
``stage.text_cols`` names others) and cuts them as it did: spaCy words, or the pieces of its SentencePiece model.

Several entries (e.g. a forward and a backward classifier: ``direction=both``) form an ensemble whose class
probabilities are averaged, as the paper does for its fwd+bwd results. Each model reads the texts in its own direction.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.text.learner import TextLearner

from ulmfit.data.readers import Columns, open_text, read_table, text_columns
from ulmfit.data.subword import model_of
from ulmfit.data.tokenizer import TokenIds
from ulmfit.data.tokens import Docs, TokenizerSettings, file_sha256, vocab_lookup
from ulmfit.data.loaders import clas_loader
from ulmfit.directions import BACKWARD, BOTH, FORWARD, backward_of, is_backward, of_direction
from ulmfit.errors import UsageError
from ulmfit.evaluation import probs_in_input_order
from ulmfit.store import Entry, Store
from ulmfit.tasks import Task
from ulmfit.hardware import resolve_device
from ulmfit.weights import load_model


@dataclass
class Classifier:
    """A classifier entry loaded for prediction."""

    entry: Entry
    model: torch.nn.Module
    vocab: list[str]
    classes: list[str]
    backwards: bool
    sp_model: Path | None = None           # the SentencePiece model it reads with; None: spaCy words
    text_cols: tuple[str | int, ...] = ("text",)  # the input columns it was trained on
    task: Task = Task()                    # what it predicts (ulmfit.tasks)
    threshold: float | None = None         # multilabel: the labels predicted reach it (chosen on validation)

    @classmethod
    def load(cls, entry: Entry, device: torch.device) -> "Classifier":
        info = entry.model_info
        if info.get("kind") != "classifier":
            raise UsageError(f"{entry.ref} is a {info.get('kind')} entry, not a classifier; pass a 'classify' "
                             f"entry name.")
        model = load_model(entry)
        text_cols = text_columns(entry.config().data.get("text_cols") or "text")  # csv data; the others: text
        return cls(entry, model.to(device).eval(), entry.vocab, list(info["classes"]), bool(info["backwards"]),
                   model_of(entry), text_cols, Task.of_entry(info), info.get("threshold"))

    def predict_probs(self, tokens: TokenIds, bs: int = 64) -> np.ndarray:
        """Class probabilities of tokenized texts, one row per text, in input order (label probabilities; a
        regression's numbers, one per text: ``Task.scores``)."""
        # this model's vocab ids (unknown tokens -> xxunk), looked up once per distinct token
        return self.predict_docs(Docs(vocab_lookup(tokens.words, self.vocab)[tokens.ids], tokens.offsets), bs)

    def predict_docs(self, docs: Docs, bs: int = 64) -> np.ndarray:
        """Class probabilities of texts already numericalized with this model's vocab, in input order."""
        return docs_scores(self.model, docs, bs, self.entry.model_info["head"]["bptt"], self.backwards, self.task)


def docs_scores(scorer: Learner | torch.nn.Module, docs: Docs, bs: int, bptt: int, backwards: bool = False,
                task: Task = Task()) -> np.ndarray:
    """``task``'s scores (``Task.scores``: class or label probabilities, a regression's numbers) of texts
    numericalized with the model's vocab, in input order, from a length-sorted loader without targets (no loss
    computed). ``scorer``: classify's trained learner (its precision callbacks apply), or a loaded classifier
    model (``Classifier``: predict, evaluate, the backward half of a direction=both pair)."""
    learn = scorer if isinstance(scorer, Learner) else None
    device = learn.dls.device if learn is not None else next(scorer.parameters()).device
    dl = clas_loader(docs, None, bs, bptt, shuffle=False, device=device, backwards=backwards)
    if learn is None:
        # TextLearner's RNN callbacks unpack the classifier's (logits, raw, out) output and reset its state; the
        # loss's activation gives the task's scores (softmax, sigmoid, the number)
        learn = TextLearner(DataLoaders(dl, dl, device=device), scorer, loss_func=task.loss_func())
    return task.scores(probs_in_input_order(learn, dl))


def ensemble_entries(store: Store, names: Sequence[str] | None, direction: str = FORWARD) -> list[Entry]:
    """The named classify entries, or the newest one of ``direction`` (of ``both``: the newest forward one); with
    ``direction=both`` each is followed by the backward model beside it (``ulmfit.directions``)."""
    if names:
        entries = [store.find("classify", n) for n in names]
    else:
        newest = of_direction(store.entries("classify"), direction == BACKWARD)
        if not newest:
            store.latest("classify")  # stops where there is no classifier at all: run stage=classify first
            raise UsageError(f"The store {store.root} has no {BACKWARD if direction == BACKWARD else FORWARD} "
                             f"classify entry; name the classifiers with stage.models=[<name>, ...].")
        entries = [newest[-1]]
    if direction != BOTH:
        return entries
    if backward := [e.ref for e in entries if is_backward(e)]:
        raise UsageError(f"direction=both pairs each forward classifier with its backward model, and {backward[0]} "
                         f"is a backward one: name the forward one in stage.models.")
    return [member for e in entries for member in (e, backward_of(store, e))]


def load_ensemble(store: Store, names: Sequence[str] | None, device: torch.device,
                  direction: str = FORWARD) -> list[Classifier]:
    """The classify entries ``ensemble_entries`` picks, loaded; all must predict the same classes."""
    entries = ensemble_entries(store, names, direction)
    models = [Classifier.load(e, device) for e in entries]
    for m in models[1:]:
        if m.classes != models[0].classes or m.task != models[0].task:
            raise UsageError(f"{m.entry.ref} predicts {m.classes} but {models[0].entry.ref} predicts "
                             f"{models[0].classes}; an ensemble needs classifiers of the same task.")
    return models


def ensemble_threshold(models: Sequence[Classifier]) -> float | None:
    """A multilabel ensemble's decision threshold: the mean of its members' (each chosen on its validation
    texts); None for the other tasks."""
    return float(np.mean([m.threshold for m in models])) if models[0].threshold is not None else None


def member_probs(models: Sequence[Classifier], texts: Sequence[str], settings: TokenizerSettings,
                 bs: int = 64) -> list[np.ndarray]:
    """Each model's class probabilities for raw ``texts`` (tokenized once per tokenizer: fastai's rules, then spaCy
    words or a SentencePiece model's pieces)."""
    tokens: dict[str | None, TokenIds] = {}
    for m in models:  # members of one lineage hold copies of one SentencePiece model: the same sha256
        key = file_sha256(m.sp_model) if m.sp_model is not None else None
        if key not in tokens:
            tokens[key] = replace(settings, sp_model=m.sp_model).tokenize_ids(texts)
    return [m.predict_probs(tokens[file_sha256(m.sp_model) if m.sp_model is not None else None], bs) for m in models]


def ensemble_probs(models: Sequence[Classifier], texts: Sequence[str], settings: TokenizerSettings,
                   bs: int = 64) -> np.ndarray:
    """Averaged class probabilities of ``models`` for raw ``texts``."""
    return np.mean(member_probs(models, texts, settings, bs), axis=0)


def read_inputs(path: str | os.PathLike, text_cols: str | Columns, label_col: str | None = None,
                encoding: str = "utf-8", keep: Sequence[str] = ()) -> pd.DataFrame:
    """Texts (and labels, for evaluation) from a CSV/TSV (optionally compressed; several ``text_cols`` joined with
    fastai's field markers) or a text file (one per line); ``keep``: input columns carried through as
    ``input.<column>`` (a text file has one, ``text``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"Input file {path} does not exist. Set stage.input=<a CSV, TSV or .txt file>.")
    if ".txt" in path.suffixes:
        if label_col:
            raise UsageError(f"{path} is a text file without labels; evaluate needs a labelled CSV/TSV.")
        with open_text(path, encoding) as fh:
            texts = [line.rstrip("\n") for line in fh]
        if not texts:
            raise UsageError(f"Input file {path} is empty.")
        if unknown := [c for c in keep if c != "text"]:
            raise UsageError(f"{path} is a text file: its only column is 'text', not {unknown[0]!r}. Fix "
                             f"stage.keep_columns.")
        return pd.DataFrame({"text": texts, "label": [""] * len(texts), **{f"input.{c}": texts for c in keep}})
    return read_table(path, text_cols, label_col, labelled=label_col is not None, encoding=encoding, keep=keep,
                      options="stage.text_cols / stage.label_col")


def default_output(cfg: Any, kind: str, suffix: str) -> Path:
    """``stage.output``, or ``<paths.root>/<kind>/<input stem>-<models>[-both]<suffix>``."""
    if cfg.stage.output:
        return Path(cfg.stage.output).expanduser()
    stem = Path(cfg.stage.input).name.split(".")[0]
    both = "-both" if cfg.direction == BOTH else ""
    return Path(cfg.paths.root) / kind / f"{stem}-{'+'.join(cfg.stage.models or ['latest'])}{both}{suffix}"


def predict_inputs(cfg: Any, label_col: str | None = None
                   ) -> tuple[pd.DataFrame, list[Classifier], np.ndarray, list[np.ndarray], float]:
    """What ``predict`` and ``evaluate`` share: read ``stage.input``, load ``stage.models`` (with ``direction``),
    tokenize once per tokenizer, average the models' probabilities. Returns (inputs, models, averaged
    probabilities, each model's probabilities, seconds for the prediction)."""
    models = load_ensemble(Store(cfg.paths.store), cfg.stage.models, resolve_device(cfg.train.device), cfg.direction)
    text_cols = cfg.stage.text_cols or models[0].text_cols  # null: the columns the classifiers were trained on
    if not cfg.stage.text_cols and (other := next((m for m in models if m.text_cols != text_cols), None)):
        raise UsageError(f"{other.entry.ref} was trained on the columns {list(other.text_cols)} but "
                         f"{models[0].entry.ref} on {list(text_cols)}; name the input's with stage.text_cols=[...].")
    inputs = read_inputs(cfg.stage.input, text_cols, label_col, encoding=cfg.stage.encoding,
                         keep=list(cfg.stage.get("keep_columns") or []))  # predict has it, evaluate does not
    task = models[0].task
    if label_col is not None:
        task.check_rows(inputs["label"].tolist(), str(cfg.stage.input))
    if label_col is not None and (unseen := sorted(task.label_set(inputs["label"]) - set(models[0].classes))):
        raise UsageError(f"{cfg.stage.input} has labels {unseen[:5]} that {models[0].entry.ref} never saw "
                         f"(it knows {models[0].classes}). Fix stage.label_col or the labels.")
    t0 = time.perf_counter()
    each = member_probs(models, inputs["text"].tolist(), TokenizerSettings.from_config(cfg.tokenizer), cfg.stage.bs)
    return inputs, models, np.mean(each, axis=0), each, time.perf_counter() - t0

