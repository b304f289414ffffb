"""Types and ranges of the options a user sets, checked on the composed config before a stage does any work, and
the options that were renamed, checked on the overrides before anything is composed (``check_renamed``).

Hydra composes the YAML tree but accepts any value for any key (``train.lr=abc`` is a string). Each rule below
names a key, what it must be, and an example; ``validate`` raises one ``UsageError`` naming the first bad value
(exit code 2). Keys a stage does not have are skipped. Paths and file names are checked by the readers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

from ulmfit.errors import UsageError
from ulmfit.options import (CLASSIFY_PARENT_STAGES, DIRECTIONS, LM_LOSSES, LOGGER_MODES, OPTIMIZERS, PARENT_VOCAB,
                            POOL_LAYERS, PRECISIONS, SCHEDULES, TASKS, TOKENIZERS)


@dataclass(frozen=True)
class Rule:
    what: str                     # "a positive number", for the message
    ok: Callable[[Any], bool]
    example: str                  # a valid setting, for the message
    nullable: bool = False


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def integer(lo: int, example: str, nullable: bool = False) -> Rule:
    word = {0: "a whole number >= 0", 1: "a positive whole number"}.get(lo, f"a whole number >= {lo}")
    return Rule(word, lambda v: _is_int(v) and v >= lo, example, nullable)


def positive(example: str, nullable: bool = False) -> Rule:
    return Rule("a positive number", lambda v: _is_num(v) and v > 0, example, nullable)


def non_negative(example: str, nullable: bool = False) -> Rule:
    return Rule("a number >= 0", lambda v: _is_num(v) and v >= 0, example, nullable)


def fraction(example: str, closed: bool = False) -> Rule:
    """A probability-like value: [0, 1) (dropouts, momentum), or (0, 1] with ``closed``."""
    if closed:
        return Rule("a number in (0, 1]", lambda v: _is_num(v) and 0 < v <= 1, example)
    return Rule("a number in [0, 1)", lambda v: _is_num(v) and 0 <= v < 1, example)


def choice(*options: str, nullable: bool = False) -> Rule:
    return Rule(f"one of {', '.join(options)}", lambda v: v in options, options[0], nullable)


def boolean(example: str) -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool), example)


def columns(v: Any) -> bool:
    """A column name (a number where ``data.header=false``), or a list of distinct ones."""
    names = list(v) if isinstance(v, ListConfig) else [v]
    return bool(names) and all((isinstance(c, str) and c.strip() != "") or _is_int(c) for c in names) \
        and len(set(names)) == len(names)


def device(v: Any) -> bool:
    return isinstance(v, str) and (v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:") and v[5:].isdigit())


RULES: dict[str, Rule] = {
    "seed": integer(0, "seed=7"),
    "data_seed": integer(0, "data_seed=7"),
    "direction": choice(*DIRECTIONS),
    "resume": boolean("resume=true"),
    "tokenizer.n_workers": integer(0, "tokenizer.n_workers=2", nullable=True),
    # data
    "data.max_vocab": integer(1, "data.max_vocab=60000"),
    "data.min_freq": integer(1, "data.min_freq=3"),
    "data.valid_frac": Rule("a number in (0, 1)", lambda v: _is_num(v) and 0 < v < 1, "data.valid_frac=0.1"),
    "data.n_train": integer(1, "data.n_train=1000", nullable=True),
    "data.n_valid": integer(1, "data.n_valid=500", nullable=True),
    "data.n_test": integer(1, "data.n_test=1000", nullable=True),
    "data.download": boolean("data.download=true"),
    "data.task": choice(*TASKS),
    "data.label_delim": Rule("a non-empty string", lambda v: isinstance(v, str) and v != "",
                             "data.label_delim=';'"),
    "data.tokens": Rule("a path to a portable token file", lambda v: isinstance(v, str) and v.strip() != "",
                        "data.tokens=imdb.tokens", nullable=True),
    "data.text_cols": Rule("a column name or a list of them", columns, "data.text_cols=[title,body]"),
    "data.tokenizer": choice(*TOKENIZERS),
    "data.sp_vocab_size": integer(1, "data.sp_vocab_size=8000", nullable=True),
    # model
    "model.emb_sz": integer(1, "model.emb_sz=400"),
    "model.n_hid": integer(1, "model.n_hid=1152"),
    "model.n_layers": integer(1, "model.n_layers=3"),
    **{f"model.{p}": fraction(f"model.{p}=0.3") for p in ("output_p", "hidden_p", "input_p", "embed_p", "weight_p")},
    "model.head.max_len": integer(1, "model.head.max_len=1400"),
    "model.head.pool_layers": choice(*POOL_LAYERS),
    # training
    "train.epochs": Rule("a whole number >= 0 or auto", lambda v: v == "auto" or _is_int(v) and v >= 0,
                         "train.epochs=2"),
    "train.auto_tokens": integer(1, "train.auto_tokens=1500000"),
    "train.max_epochs": integer(1, "train.max_epochs=20"),
    "train.patience": integer(1, "train.patience=2", nullable=True),
    "train.monitor": Rule("a metric name", lambda v: isinstance(v, str) and v != "", "train.monitor=valid_loss",
                          nullable=True),
    "train.lr": positive("train.lr=4e-3"),
    "train.schedule": choice(*SCHEDULES),
    "train.stlr.cut_frac": fraction("train.stlr.cut_frac=0.1", closed=True),
    "train.stlr.ratio": positive("train.stlr.ratio=32"),
    "train.discr_factor": positive("train.discr_factor=2.6"),
    "train.optimizer.name": choice(*OPTIMIZERS),
    "train.optimizer.beta1": fraction("train.optimizer.beta1=0.7"),
    "train.optimizer.beta2": fraction("train.optimizer.beta2=0.99"),
    "train.optimizer.eps": positive("train.optimizer.eps=1e-5"),
    "train.wd": non_negative("train.wd=0.01"),
    "train.drop_mult": non_negative("train.drop_mult=0.5"),
    "train.alpha": non_negative("train.alpha=2"),
    "train.beta": non_negative("train.beta=1"),
    "train.clip": positive("train.clip=0.4", nullable=True),
    "train.bs": integer(1, "train.bs=64"),
    "train.bptt": integer(1, "train.bptt=70"),
    "train.eval_bs": integer(1, "train.eval_bs=64"),
    "train.precision": choice(*PRECISIONS),
    "train.checkpoint_minutes": non_negative("train.checkpoint_minutes=20", nullable=True),
    "train.host_sync_every": Rule("auto or a positive whole number", lambda v: v == "auto" or _is_int(v) and v >= 1,
                                  "train.host_sync_every=100"),
    "train.lm_loss": choice(*LM_LOSSES),
    "train.device": Rule("auto, cpu, cuda or cuda:<n>", device, "train.device=cpu"),
    "train.gradual_unfreezing": boolean("train.gradual_unfreezing=false"),
    "train.phase_epochs": integer(0, "train.phase_epochs=1"),
    "train.unfreeze_phases": integer(1, "train.unfreeze_phases=3", nullable=True),
    "train.phase_lr_mult": positive("train.phase_lr_mult=0.5"),
    "train.feature_extraction": boolean("train.feature_extraction=true"),
    "train.freeze_epochs": integer(0, "train.freeze_epochs=1"),
    # stages
    "stage.lm_tokens": integer(1, "stage.lm_tokens=8000000", nullable=True),
    "stage.max_tokens": integer(1, "stage.max_tokens=10000000", nullable=True),
    "stage.lm_only_labelled": boolean("stage.lm_only_labelled=true"),
    "stage.parent_vocab": choice(*PARENT_VOCAB),
    "stage.parent_stage": choice(*CLASSIFY_PARENT_STAGES),
    "stage.bs": integer(1, "stage.bs=64"),
    "stage.text_cols": Rule("a column name or a list of them", columns, "stage.text_cols=[title,body]", nullable=True),
    "logger.mode": choice(*LOGGER_MODES),
    "logger.log_every": integer(1, "logger.log_every=10"),
    "logger.init_timeout": positive("logger.init_timeout=30"),
}


def _show(v: Any) -> str:
    if isinstance(v, (DictConfig, ListConfig)):
        v = OmegaConf.to_container(v)
    return repr(v)


def validate(cfg: DictConfig) -> None:
    """Raise a ``UsageError`` for the first option of ``cfg`` whose value has the wrong type or range."""
    for key, rule in RULES.items():
        node = OmegaConf.select(cfg, key, default="<absent>", throw_on_missing=False)
        if node in ("<absent>", "???") or (node is None and rule.nullable):  # ??? is Hydra's "must be set"
            continue
        if not rule.ok(node):
            what = f"{rule.what} or null" if rule.nullable else rule.what
            example = rule.example if "=" in rule.example else f"{key}={rule.example}"
            raise UsageError(f"{key}={_show(node)} is not valid: it must be {what} (e.g. {example}).")


@dataclass(frozen=True)
class Renamed:
    new: str                              # the option that replaced it
    value: Callable[[str], str | None]    # an old value as the new option's (None: no direct equivalent)
    takes: str                            # what the new option takes, for the message


# Old spellings that no longer exist in the config: without this table they reach Hydra, whose "Key '...' is not
# in struct" names neither the new option nor its value. One row per renamed option.
RENAMED: dict[str, Renamed] = {
    "backwards": Renamed("direction", lambda v: {"true": "backward", "false": "forward"}.get(v.strip().lower()),
                         "forward|backward|both"),
    "data.text_col": Renamed("data.text_cols", lambda v: f"[{v}]" if v.strip() else None,
                             "a column or a list of them: [title,body]"),
    "stage.text_col": Renamed("stage.text_cols", lambda v: f"[{v}]" if v.strip() else None,
                              "a column or a list of them: [title,body]"),
}


def check_renamed(overrides: Iterable[str]) -> None:
    """Raise a ``UsageError`` naming the new spelling for the first override (``key=value``, ``+key=value``,
    ``~key``) of an option in ``RENAMED``; other arguments (flags, group choices) pass."""
    for override in overrides:
        key, sep, value = override.partition("=")
        old = RENAMED.get(key.lstrip("+~"))
        if old is None:
            continue
        new = old.value(value) if sep else None
        given = f"{key.lstrip('+~')}={value}" if sep else key.lstrip("+~")
        instead = f"{old.new}={new} ({old.takes})" if new else f"{old.new} ({old.takes})"
        raise UsageError(f"{given} was replaced by {instead}.")
