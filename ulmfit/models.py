"""Model builders: fastai's AWD-LSTM language model from a ``model`` config.

The architecture is also written to each store entry's ``model.json``, so a later stage rebuilds exactly
the network its parent trained, whatever its own ``model`` config says.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch.nn as nn
from fastai.text.models.awdlstm import AWD_LSTM
from fastai.text.models.core import get_language_model, get_text_classifier

from ulmfit.errors import UsageError

ARCHS = {"awd_lstm": AWD_LSTM}
_AWD_KEYS = ("emb_sz", "n_hid", "n_layers", "output_p", "hidden_p", "input_p", "embed_p", "weight_p",
             "tie_weights", "out_bias")
_DECODER_KEYS = ("output_p", "tie_weights", "out_bias")  # LM decoder options; the classifier has no decoder


def arch_config(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The fastai ``config`` dict for ``get_language_model`` (dropouts before ``drop_mult``)."""
    if model_cfg.get("arch") not in ARCHS:  # .get: a hand-written model config may lack it; say so, not KeyError
        raise UsageError(f"Unknown model.arch {model_cfg.get('arch')!r}; available: {', '.join(ARCHS)}.")
    missing = [k for k in _AWD_KEYS if k not in model_cfg]
    if missing:
        raise UsageError(f"The model config lacks {missing}; start from conf/model/awd_lstm.yaml.")
    return {"pad_token": 1, "bidir": False, **{k: model_cfg[k] for k in _AWD_KEYS}}


def model_info(model_cfg: Mapping[str, Any], vocab_size: int, drop_mult: float, backwards: bool = False,
               kind: str = "language_model") -> dict[str, Any]:
    """What ``model.json`` records: enough to rebuild the network."""
    return {"kind": kind, "arch": model_cfg["arch"], "config": arch_config(model_cfg), "vocab_size": vocab_size,
            "drop_mult": drop_mult, "backwards": backwards}


def build_language_model(info: Mapping[str, Any], drop_mult: float | None = None) -> nn.Module:
    """fastai's AWD-LSTM LM (encoder + tied decoder) as described by ``model_info``."""
    return get_language_model(ARCHS[info["arch"]], info["vocab_size"], config=dict(info["config"]),
                              drop_mult=info["drop_mult"] if drop_mult is None else drop_mult)


def classifier_info(encoder_info: Mapping[str, Any], head_cfg: Mapping[str, Any], classes: list[str],
                    drop_mult: float, bptt: int) -> dict[str, Any]:
    """``model.json`` of a classifier: the encoder's architecture plus the concat-pooling head."""
    return {**encoder_info, "kind": "classifier", "classes": list(classes), "drop_mult": drop_mult,
            "head": {"lin_ftrs": list(head_cfg["lin_ftrs"]), "ps": list(head_cfg["ps"]),
                     "max_len": head_cfg["max_len"], "bptt": bptt}}


def build_classifier(info: Mapping[str, Any]) -> nn.Module:
    """fastai's text classifier: ``SentenceEncoder`` (BPT3C: the document in ``bptt`` chunks, outputs of the
    last ``max_len`` tokens kept) + ``PoolingLinearClassifier`` ([last, max-pool, mean-pool] -> BatchNorm,
    dropout, linear -> hidden ``lin_ftrs`` -> classes)."""
    head = info["head"]
    encoder_config = {k: v for k, v in info["config"].items() if k not in _DECODER_KEYS}
    return get_text_classifier(ARCHS[info["arch"]], info["vocab_size"], len(info["classes"]), seq_len=head["bptt"],
                               config=encoder_config, drop_mult=info["drop_mult"],
                               lin_ftrs=list(head["lin_ftrs"]), ps=list(head["ps"]), max_len=head["max_len"])


def encoder_of(model: nn.Module) -> nn.Module:
    """The AWD-LSTM inside an LM (``model[0]``) or a classifier (``model[0].module``)."""
    enc = model[0]
    return getattr(enc, "module", enc)
