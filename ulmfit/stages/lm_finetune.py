"""Stage 2: fine-tune the pretrained LM on the target corpus (ULMFiT §3.2).

load parent ``pretrain`` entry -> target texts (train + unlabelled; labels are never read) -> new vocab,
embeddings transferred (fastai ``match_embeds``) -> discriminative LRs + slanted triangular LRs -> target
perplexity before/after -> store entry ``lm_finetune/<run>`` (the LM; classify takes its encoder).
``direction=both``: ``lm_finetune/<run>-bwd`` from the parent's backward model, then ``lm_finetune/<run>`` from the
parent (``ulmfit.directions``).
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from ulmfit.data import build_vocab, labelled_lm_splits, lm_splits, load_corpus
from ulmfit.data.tokens import with_parent_words
from ulmfit.data.loaders import lm_dataloaders
from ulmfit.data.streams import within_budget
from ulmfit.directions import BOTH, backwards_flag, check_direction
from ulmfit.errors import UsageError
from ulmfit.distributed import is_main_process
from ulmfit.models import build_language_model, model_info
from ulmfit.stages.common import (direction_runs, find_parent, lineage, open_run, save_entry, subword_model,
                                  tokenizer_kind)
from ulmfit.store import Entry
from ulmfit.hardware import resolve_hardware
from ulmfit.options import LM_MONITORS, PARENT_VOCAB
from ulmfit.training import (check_monitor, fit_phases, kept_history, lm_valid, lm_eval, lm_learner, lm_plan,
                             resolve_auto_epochs, seed_everything)
from ulmfit.weights import transferred_lm_weights

log = logging.getLogger(__name__)
STAGE = "lm_finetune"


def run(cfg: DictConfig) -> Entry:
    check_monitor(cfg.train, LM_MONITORS)
    if cfg.stage.parent_vocab not in PARENT_VOCAB:
        raise UsageError(f"stage.parent_vocab={cfg.stage.parent_vocab!r}; use one of {', '.join(PARENT_VOCAB)}.")
    if cfg.direction != BOTH:
        return _run(cfg)
    entry = None
    for one, done in direction_runs(cfg, STAGE, "pretrain"):  # backward first: the forward entry is the newest
        entry = done or _run(one)
    return entry


def _run(cfg: DictConfig) -> Entry:
    """One language model, in one direction."""
    backwards = backwards_flag(cfg, STAGE)
    store, name, checkpoint, resume = open_run(cfg, STAGE)
    # unnamed: the newest of this run's direction and tokenizer (one built with the other could not be read)
    parent = find_parent(store, "pretrain", cfg.stage.parent, backwards=backwards, tokenizer=tokenizer_kind(cfg))
    if parent is not None:
        check_direction(parent, backwards)
    sp_model = subword_model(cfg, parent, cfg.stage.lm_parts)  # the parent's, or trained on the LM's texts
    seed_everything(cfg.seed)
    device, precision = resolve_hardware(cfg.train)

    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache, sp_model)
    parts = [p for p in cfg.stage.lm_parts if p in corpus.parts]
    if not parts:
        raise UsageError(f"None of stage.lm_parts={list(cfg.stage.lm_parts)} is in the corpus "
                         f"(it has {list(corpus.parts)}).")
    if cfg.stage.lm_only_labelled:  # the LM sees only classify's labelled training texts
        if parts != ["train"]:
            raise UsageError(f"stage.lm_only_labelled=true fine-tunes on the labelled training texts only; "
                             f"set stage.lm_parts=[train] (got {parts}).")
        train, valid, vocab = labelled_lm_splits(corpus, cfg.data, cfg.data_seed)
    else:
        vocab = build_vocab(corpus, parts, cfg.data.max_vocab, cfg.data.min_freq)
        if parent is not None:  # rare target words the pretrained LM already knows stay words, not xxunk
            vocab = with_parent_words(vocab, corpus.counts(parts), parent.vocab, cfg.stage.parent_vocab)
        train, valid = lm_splits(corpus, vocab, parts, cfg.data.valid_frac, cfg.data_seed)
    budget = cfg.stage.lm_tokens
    train = within_budget(train, budget, cfg.data_seed)
    resolve_auto_epochs(cfg, train.n_tokens)  # train.epochs=auto: passes that fit this corpus's size
    dls = lm_dataloaders(train, valid, vocab, cfg.train.bs, cfg.train.bptt, device, backwards,
                         eval_bs=cfg.train.eval_bs)

    if parent is None:  # ablation "no pretraining": same recipe from a random init
        info = model_info(cfg.model, len(vocab), cfg.train.drop_mult, backwards=backwards)
        model = build_language_model(info)
    else:  # the parent's architecture, re-indexed for the target vocabulary
        info = {**parent.model_info, "vocab_size": len(vocab), "drop_mult": cfg.train.drop_mult}
        model = build_language_model(info)
        model.load_state_dict(transferred_lm_weights(parent, vocab))
    n_new = len(set(vocab) - set(parent.vocab)) if parent else len(vocab)
    log.info("lm_finetune: parent %s, parts %s, %d train / %d valid tokens, vocab %d (%d new)",
             parent.ref if parent else "none", parts, train.n_tokens, valid.n_tokens, len(vocab), n_new)

    learn = lm_learner(dls, model, cfg.train, precision)
    # Perplexity before fine-tuning; a resumed run reads it from its checkpoint (the weights there are trained).
    before = resume.extras["before"] if resume else lm_eval(learn, dls.valid)
    # Optional warm-up of the (new) embeddings and decoder only (train.freeze_epochs), then all layers.
    seconds, phases = fit_phases(learn, cfg.train, lm_plan, checkpoint, resume, extras={"before": before})
    history = phases[-1]["history"]
    epochs = sum(len(p["history"]) for p in phases)  # fewer than planned where train.patience stopped the run
    if not is_main_process():  # data-parallel run: rank 0 evaluates and writes the entry
        return None

    metrics = {**{"valid_" + k: v for k, v in lm_valid(kept_history(phases, learn.kept_epoch)).items()},
               "valid_perplexity_before": before["perplexity"], "epochs": epochs, "kept_epoch": learn.kept_epoch,
               "train_seconds": round(seconds, 1), "train_tokens": train.n_tokens, "vocab_size": len(vocab),
               "new_tokens": n_new,
               "tokens_per_second": round(train.n_tokens * epochs / seconds, 1),
               "tokenize_cache_hit": corpus.cache_hit, "tokenize_seconds": round(corpus.seconds, 2),
               "history": history}
    return save_entry(store, STAGE, name, cfg, model=learn.model, vocab=vocab, info=info, metrics=metrics,
                      lineage=lineage(cfg, corpus, {"parts": parts, "lm_tokens": budget}, parent=parent,
                                      precision=precision, learn=learn),
                      curves=learn.curve_recorder.curves(), checkpoint=checkpoint, sp_model=sp_model)
