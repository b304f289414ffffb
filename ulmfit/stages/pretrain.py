"""Stage 1: train a general-domain AWD-LSTM language model (e.g. WikiText-2 on a CPU, WikiText-103 on a GPU).

load corpus (token cache) -> vocab from train -> LM DataLoaders -> fastai LMLearner -> fit -> valid/test
perplexity -> store entry ``pretrain/<run>`` (LM weights, vocab, config, metrics, lineage).
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from ulmfit.data import TokenStream, build_vocab, lm_splits, load_corpus
from ulmfit.data.loaders import lm_dataloaders, lm_loader
from ulmfit.data.streams import within_budget
from ulmfit.directions import backwards_flag
from ulmfit.distributed import is_main_process
from ulmfit.models import build_language_model, model_info
from ulmfit.stages.common import lineage, open_run, save_entry, subword_model
from ulmfit.store import Entry
from ulmfit.hardware import resolve_hardware
from ulmfit.options import LM_MONITORS
from ulmfit.training import (check_monitor, fit_phases, kept_history, lm_valid, lm_eval, lm_learner, lm_plan,
                             resolve_auto_epochs, seed_everything)

log = logging.getLogger(__name__)
STAGE = "pretrain"


def run(cfg: DictConfig) -> Entry:
    check_monitor(cfg.train, LM_MONITORS)
    backwards = backwards_flag(cfg, STAGE)
    store, name, checkpoint, resume = open_run(cfg, STAGE)
    seed_everything(cfg.seed)
    device, precision = resolve_hardware(cfg.train)

    sp_model = subword_model(cfg, None, ["train"])  # data.tokenizer=sentencepiece: trained on the vocab's texts
    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache, sp_model)
    vocab = build_vocab(corpus, ["train"], cfg.data.max_vocab, cfg.data.min_freq)
    train, valid = lm_splits(corpus, vocab, ["train"], cfg.data.valid_frac, cfg.data_seed)
    train = within_budget(train, cfg.stage.lm_tokens, cfg.data_seed)  # e.g. a part of a 100M-token corpus
    resolve_auto_epochs(cfg, train.n_tokens)  # train.epochs=auto: passes that fit this corpus's size
    dls = lm_dataloaders(train, valid, vocab, cfg.train.bs, cfg.train.bptt, device, backwards,
                         eval_bs=cfg.train.eval_bs)
    log.info("pretrain: %d train / %d valid tokens, vocab %d, device %s", train.n_tokens, valid.n_tokens,
             len(vocab), device)

    info = model_info(cfg.model, len(vocab), cfg.train.drop_mult, backwards=backwards)
    learn = lm_learner(dls, build_language_model(info), cfg.train, precision)
    seconds, phases = fit_phases(learn, cfg.train, lm_plan, checkpoint, resume)
    history = phases[-1]["history"]
    if not is_main_process():  # data-parallel run: rank 0 evaluates and writes the entry
        return None

    metrics = {"valid_" + k: v for k, v in lm_valid(kept_history(phases, learn.kept_epoch)).items()}
    if "test" in corpus.parts:
        test_dl = lm_loader(TokenStream.from_parts(corpus, ["test"], vocab), cfg.train.eval_bs, cfg.train.bptt, False, device,
                            backwards)
        metrics.update({"test_" + k: v for k, v in lm_eval(learn, test_dl).items()})
    epochs = sum(len(p["history"]) for p in phases)
    metrics.update({"epochs": epochs, "kept_epoch": learn.kept_epoch, "train_seconds": round(seconds, 1),
                    "train_tokens": train.n_tokens, "vocab_size": len(vocab),
                    "tokens_per_second": round(train.n_tokens * epochs / seconds, 1),
                    "tokenize_cache_hit": corpus.cache_hit, "tokenize_seconds": round(corpus.seconds, 2),
                    "history": history})
    return save_entry(store, STAGE, name, cfg, model=learn.model, vocab=vocab, info=info, metrics=metrics,
                      lineage=lineage(cfg, corpus, {"parts": ["train"], "lm_tokens": cfg.stage.lm_tokens},
                                      precision=precision, learn=learn),
                      curves=learn.curve_recorder.curves(), checkpoint=checkpoint, sp_model=sp_model)
