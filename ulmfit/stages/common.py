"""Glue every stage shares: opening the store, finding the parent, the lineage, writing the entry."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import logging
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ulmfit import tracking
from ulmfit.checkpoint import ResumeState, RunCheckpoint, checkpoint_dir, latest_checkpoint
from ulmfit.data.portable import portable_fingerprint
from ulmfit.data.readers import make_reader
from ulmfit.data.subword import BUILT_ON, NOT_PORTABLE, SP_MODEL, SPACY, check_tokenizer, model_of, tokenizer_of
from ulmfit.data.tokens import TokenizedCorpus, TokenizerSettings, fingerprint, sentencepiece_model
from ulmfit.distributed import main_process_first
from ulmfit.directions import BACKWARD, FORWARD, backward_name, backward_of, check_direction, is_backward, of_direction
from ulmfit.errors import UsageError
from ulmfit.report import print_table
from ulmfit.store import Entry, Store, new_run_name
from ulmfit.training import device_choices

log = logging.getLogger(__name__)


def default_run_name() -> str:
    """A sweep's job is named by its overrides, after the time (``<YYYYmmdd-HHMMSS>-train.lr=0.001``), so the
    store shows what each job tried; any other run by the time and a random suffix."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        label = re.sub(r"[^A-Za-z0-9._=,+-]", "_", HydraConfig.get().job.override_dirname)
        if len(label) > 150:  # keep names short enough for any filesystem, still unique
            label = f"{label[:140]}-{hashlib.sha1(label.encode()).hexdigest()[:8]}"
        if label:
            return f"{dt.datetime.now():%Y%m%d-%H%M%S}-{label}"
    return new_run_name()


def open_store(cfg: DictConfig, stage: str) -> tuple[Store, str]:
    """The store and this run's entry name, checked writable before any work starts."""
    store, name = Store(cfg.paths.store), cfg.run_name or default_run_name()
    store.check_writable(stage, name)
    return store, name


def open_run(cfg: DictConfig, stage: str) -> tuple[Store, str, RunCheckpoint, ResumeState | None]:
    """``open_store`` for a training stage: also its per-epoch checkpoints, and the state to continue from
    when ``resume=true`` (refused without a run_name or a checkpoint, or with a different model/data config)."""
    _check_resume_name(cfg, stage)
    store, name = open_store(cfg, stage)
    checkpoint = RunCheckpoint(store.root, stage, name, cfg)
    return store, name, checkpoint, checkpoint.prepare(bool(cfg.resume))


def _check_resume_name(cfg: DictConfig, stage: str) -> None:
    if cfg.resume and not cfg.run_name:
        raise UsageError("resume=true needs the interrupted run's name: add run_name=<name> (the hidden "
                         f"'.resume-<name>' directory under {cfg.paths.store}/{stage}/).")


def data_source(data_cfg: DictConfig) -> str:
    """A readable name of a corpus for messages and lineage: its format and folder or files (or portable file)."""
    if data_cfg.get("tokens"):
        return f"{data_cfg.format} (tokens {data_cfg.tokens})"
    where = data_cfg.get("root") or ", ".join(f"{k}={v}" for k, v in (data_cfg.get("files") or {}).items() if v)
    return f"{data_cfg.format} ({where})" if where else str(data_cfg.format)


def data_identity(data_cfg: DictConfig, tok_cfg: DictConfig) -> dict[str, str]:
    """What a stage's corpus is, before reading it: its token-cache fingerprint (file contents, reader options,
    tokenizer) and ``data_source``. A portable file carries the fingerprint of the cache it was exported from,
    so a run on it and a run that tokenized the same raw files find each other's entries."""
    if data_cfg.get("tokens"):
        return {"fingerprint": portable_fingerprint(data_cfg.tokens), "source": data_source(data_cfg)}
    key, _ = fingerprint(make_reader(data_cfg), TokenizerSettings.from_config(tok_cfg))
    return {"fingerprint": key, "source": data_source(data_cfg)}


def parent_data(parent: Entry | None, data: dict[str, str]) -> dict[str, Any] | None:
    """For the lineage: the parent's corpus, and whether it is this run's."""
    if parent is None:
        return None
    theirs = (parent.lineage.get("data") or {}).get("fingerprint")
    return {"source": _source(parent), "fingerprint": theirs, "same_as_this_run": theirs == data["fingerprint"]}


def _source(entry: Entry) -> str:
    data = entry.lineage.get("data") or {}
    return data.get("source") or f"{data.get('format', '?')} data {str(data.get('fingerprint', ''))[:8]}"


def find_parent(store: Store, stage: str, name: str | None, data: dict[str, str] | None = None,
                backwards: bool = False, tokenizer: str | None = None) -> Entry | None:
    """``stage.parent``: an entry name, null/latest for the newest, or 'none' for no parent (random init).

    The default is the newest entry that reads in this run's direction (``backwards``); with ``data``
    (``data_identity`` of the stage's corpus) also trained on the same corpus, and with ``tokenizer`` (the run's
    ``data.tokenizer``) also built with it (an error lists the others when there is none, says how to make one with
    that tokenizer, or how to make the backward model beside the forward one). A named parent trained on other data is
    used with a warning naming both (one built with another tokenizer is refused later, by ``subword_model``). The
    parent's files are checked against its manifest here (``Entry.check``), so a damaged parent stops the run before
    any data is read."""
    if name == "none":
        return None
    parent = _find_parent(store, stage, name, data, backwards, tokenizer)
    parent.check()
    return parent


def _fits(entry: Entry, data: dict[str, str] | None) -> bool:
    return data is None or (entry.lineage.get("data") or {}).get("fingerprint") == data["fingerprint"]


def _built_with(entry: Entry, tokenizer: str | None) -> bool:
    return tokenizer is None or tokenizer_of(entry) == tokenizer


def _find_parent(store: Store, stage: str, name: str | None, data: dict[str, str] | None, backwards: bool,
                 tokenizer: str | None) -> Entry:
    if name not in (None, "", "latest"):
        parent = store.get(stage, name)
        if data is not None and not _fits(parent, data):
            log.warning("stage.parent=%s was trained on %s, this run reads %s: the encoder transfers, but its "
                        "vocabulary and domain fit other text.", parent.ref, _source(parent), data["source"])
        return parent
    entries = store.entries(stage)
    if not entries:
        return store.latest(stage)  # its error: run that stage first
    fits = [e for e in entries if _fits(e, data) and _built_with(e, tokenizer)]
    if fitting := of_direction(fits, backwards):
        return fitting[-1]
    if not any(_built_with(e, tokenizer) for e in entries):  # the newest would only stop at check_tokenizer: say so
        make = "pretrain one" if stage == "pretrain" else "make one"
        raise UsageError(f"No {stage} entry in {store.root} is built with {BUILT_ON[tokenizer]}, which this run reads "
                         f"(data.tokenizer={tokenizer}): {make} with stage={stage} data.tokenizer={tokenizer}, or "
                         f"name a parent with stage.parent=<name>.")
    forward = of_direction(fits, False)
    if backwards and forward:
        backward_of(store, forward[-1])  # stops: no backward model beside the forward one, and how to make it
    direction = BACKWARD if backwards else FORWARD
    what = f"backward {stage}" if backwards else stage
    what += f" entry built with {BUILT_ON[tokenizer]}" if tokenizer is not None else " entry"
    listed = "; ".join(f"{e.name} ({_source(e)}){' backward' if is_backward(e) else ''}" for e in entries[-5:])
    on = f" was trained on this data, {data['source']}" if data is not None else ""
    raise UsageError(f"No {what} in {store.root}{on}; it has: {listed}. Run stage={stage} direction={direction} "
                     f"on this data first, or choose one with stage.parent=<name>.")


def direction_runs(cfg: DictConfig, stage: str, parent_stage: str | None,
                   data: dict[str, str] | None = None) -> list[tuple[DictConfig, Entry | None]]:
    """``direction=both``: the configs of its two runs of one direction each, backward first: ``<run_name>-bwd``
    from the backward model beside the forward parent, then ``<run_name>`` from that parent (``stage.parent`` of
    ``parent_stage``, found as a forward run finds it; ``parent_stage`` None: no parent). What either run would
    refuse before its work (no backward parent, an entry of that name, a checkpoint) stops both here, before the
    first starts. With ``resume=true`` a direction whose entry exists comes with it, to be reused (it must have
    been run on the same data and seeds); the other continues its checkpoint, if it has one."""
    _check_resume_name(cfg, stage)
    store = Store(cfg.paths.store)
    name = cfg.run_name or default_run_name()
    forward = (find_parent(store, parent_stage, cfg.stage.parent, data, tokenizer=tokenizer_kind(cfg))
               if parent_stage else None)
    if forward is not None:
        check_direction(forward, False)
    parents = {FORWARD: forward, BACKWARD: backward_of(store, forward) if forward is not None else None}
    runs = []
    for direction, run_name in ((BACKWARD, backward_name(name)), (FORWARD, name)):
        one = copy.deepcopy(cfg)
        with open_dict(one):
            one.direction, one.run_name = direction, run_name
            if parent_stage:
                one.stage.parent = parents[direction].name if parents[direction] is not None else "none"
        done = store.get(stage, run_name) if cfg.resume and store.has(stage, run_name) else None
        if done is not None:
            theirs, ours = (OmegaConf.to_container(c, resolve=True) for c in (done.config(), one))
            if differ := [k for k in ("data", "data_seed", "seed") if theirs.get(k) != ours.get(k)]:
                raise UsageError(f"{done.ref} exists but was run with other {', '.join(differ)} than this run, so the "
                                 f"two directions would not be a pair; delete it or resume with its options.")
        else:
            with open_dict(one):  # resume the direction that has a checkpoint; start the other
                one.resume = bool(cfg.resume) and latest_checkpoint(checkpoint_dir(store.root, stage, run_name)) is not None
            open_run(one, stage)  # the checks it makes first, for both runs before either starts
        runs.append((one, done))
    if cfg.resume and not any(done is not None or one.resume for one, done in runs):
        raise UsageError(f"resume=true but neither {stage}/{name} nor {stage}/{backward_name(name)} has a checkpoint "
                         f"in {store.root}. Check run_name, or drop resume=true to start a new run.")
    return runs


def parent_ref(parent: Entry | None) -> dict[str, str] | None:
    return {"stage": parent.stage, "name": parent.name, "created": parent.created} if parent else None


def tokenizer_kind(cfg: DictConfig) -> str:
    """The run's ``data.tokenizer`` (spaCy words where a hand-written data config lacks the key)."""
    return cfg.data.get("tokenizer") or SPACY


def subword_model(cfg: DictConfig, parent: Entry | None, vocab_parts: Sequence[str]) -> Path | None:
    """The SentencePiece model this stage reads its texts with (``data.tokenizer=sentencepiece``; None: spaCy words):
    its parent's, or in a stage without a parent one trained on the texts it builds its vocabulary from
    (``vocab_parts``; cached). A parent built with the other tokenizer stops the run (``ulmfit.data.subword``)."""
    kind = tokenizer_kind(cfg)
    if parent is not None:
        check_tokenizer(parent, kind)
        return model_of(parent)
    if kind == SPACY:
        return None
    if cfg.data.get("tokens"):
        raise UsageError(NOT_PORTABLE)
    with main_process_first():  # data-parallel runs: rank 0 trains it, the others read it
        return sentencepiece_model(make_reader(cfg.data), TokenizerSettings.from_config(cfg.tokenizer), vocab_parts,
                                   cfg.data.get("sp_vocab_size"), cfg.paths.cache)


def lineage(cfg: DictConfig, corpus: TokenizedCorpus | None, data: Mapping[str, Any] | None = None, *,
            parent: Entry | None = None, precision: str | None = None, learn=None, **extra: Any) -> dict[str, Any]:
    """The lineage every stage records (the store adds its creation time and environment):

    - ``parent``: the entry it started from (None: none);
    - ``data``: the corpus it read (its token-cache ``fingerprint``, ``format``, ``source``), how it was tokenized
      (``tokenizer``: spaCy words, or the sha256 of a SentencePiece model) and what it took of it (``data``: parts,
      n_train/n_valid/n_test, lm_tokens); None for a stage that read no corpus;
    - ``parent_data``: the parent's corpus, and whether it is this run's (None without a parent or corpus);
    - ``precision``: what the network ran in (``auto`` resolved; None where no network ran), and with ``learn``
      what the other device-dependent ``auto`` options ran as (``device_choices``);
    - ``extra``: what only this stage records (``imported_from``)."""
    this = None if corpus is None else {"fingerprint": corpus.fingerprint, "format": cfg.data.format,
                                        "source": data_source(cfg.data), "tokenizer": corpus.tokenizer, **(data or {})}
    return {"parent": parent_ref(parent), "data": this,
            "parent_data": parent_data(parent, this) if this is not None else None,
            "precision": precision, **(device_choices(learn) if learn is not None else {}), **extra}


def save_entry(store: Store, stage: str, name: str, cfg: DictConfig, *, metrics: Mapping[str, Any],
               lineage: Mapping[str, Any], model: torch.nn.Module | None = None, vocab: list[str] | None = None,
               info: Mapping[str, Any] | None = None,
               curves: Mapping[str, Any] | None = None, checkpoint: RunCheckpoint | None = None,
               sp_model: Path | None = None) -> Entry:
    """Write a complete entry atomically and print its metrics: its ``model`` (weights, ``vocab``, ``info``) where
    it has one (the baselines and the probe keep none), ``curves`` (per-step training curves), config, lineage, and
    the SentencePiece model its texts were read with (``sp_model``, see ``subword_model``), which its children reuse.
    A training run's ``checkpoint`` is recorded in the lineage when the run was resumed, then removed."""
    lineage = dict(lineage)
    if checkpoint is not None and checkpoint.resumed:
        lineage["resumed"] = checkpoint.resumed
    with store.create(stage, name, lineage) as w:
        if model is not None:
            w.save_model(model)  # an LM's encoder is its module 0: classify loads it from here (ulmfit.weights)
            w.save_json("vocab.json", vocab)
            w.save_json("model.json", dict(info))
        w.save_json("metrics.json", dict(metrics))
        if sp_model is not None:
            w.save_copy(SP_MODEL, sp_model)
        if curves is not None:
            w.save_json("curves.json", dict(curves))
        w.save_config(cfg)
    entry = store.get(stage, name)
    if checkpoint is not None:
        checkpoint.discard()
    tracking.current().log_summary(metrics)
    print_table(f"{stage} -> {entry.path}", metrics)
    return entry
