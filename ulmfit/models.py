"""Model builders: fastai's AWD-LSTM language model from a ``model`` config.

The architecture is also written to each store entry's ``model.json``, so a later stage rebuilds exactly
the network its parent trained, whatever its own ``model`` config says.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn
from fastai.text.models.awdlstm import AWD_LSTM
from fastai.text.models.core import PoolingLinearClassifier, SentenceEncoder, SequentialRNN, get_language_model
from fastai.torch_core import to_detach

from ulmfit.errors import UsageError
from ulmfit.options import POOL_LAYERS
from ulmfit.tasks import Task

ARCHS = {"awd_lstm": AWD_LSTM}


class AllLayersAWD_LSTM(AWD_LSTM):
    """fastai's AWD-LSTM (same weights, same dropouts) returning every layer's outputs side by side instead of
    the last layer's only, for a head that pools them all (``model.head.pool_layers=all``). An LM's last layer is
    shaped for predicting the next word (and as narrow as the embedding); the wider layers below it carry more
    of what a classifier needs (ELMo's finding)."""

    def forward(self, inp: torch.Tensor, from_embeds: bool = False) -> torch.Tensor:
        bs = inp.shape[0]
        if bs != self.bs:
            self._change_hidden(bs)
        output = self.input_dp(inp if from_embeds else self.encoder_dp(inp))
        outputs, new_hidden = [], []
        for layer, (rnn, hid_dp) in enumerate(zip(self.rnns, self.hidden_dps)):
            output, new_h = rnn(output, self.hidden[layer])
            new_hidden.append(new_h)
            outputs.append(output)
            if layer != self.n_layers - 1:
                output = hid_dp(output)
        self.hidden = to_detach(new_hidden, cpu=False, gather=False)
        return torch.cat(outputs, dim=-1)


def pooled_width(config: Mapping[str, Any], pool_layers: str) -> int:
    """Features per position the head pools: the last layer's (``emb_sz``), or every layer's."""
    if pool_layers not in POOL_LAYERS:
        raise UsageError(f"model.head.pool_layers={pool_layers!r}; use one of {', '.join(POOL_LAYERS)}.")
    if pool_layers == "last":
        return config["emb_sz"]
    return config["n_hid"] * (config["n_layers"] - 1) + config["emb_sz"]
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
                    drop_mult: float, bptt: int, task: Task = Task(),
                    y_range: list[float] | None = None) -> dict[str, Any]:
    """``model.json`` of a classifier: the encoder's architecture plus the concat-pooling head, and the task
    (``ulmfit.tasks``: its outputs, and a regression's ``y_range``)."""
    return {**encoder_info, "kind": "classifier", "classes": list(classes), "drop_mult": drop_mult, **task.record(),
            "head": {"lin_ftrs": list(head_cfg["lin_ftrs"]), "ps": list(head_cfg["ps"]),
                     "max_len": head_cfg["max_len"], "bptt": bptt,
                     "pool_layers": head_cfg.get("pool_layers", "last"),
                     **({"y_range": list(y_range)} if y_range is not None else {})}}


def build_classifier(info: Mapping[str, Any]) -> nn.Module:
    """fastai's text classifier, as ``get_text_classifier`` builds it: ``SentenceEncoder`` (BPT3C: the document
    in ``bptt`` chunks, outputs of the last ``max_len`` tokens kept) + ``PoolingLinearClassifier`` ([last,
    max-pool, mean-pool] -> BatchNorm, dropout, linear -> hidden ``lin_ftrs`` -> classes); the pooling reads the
    last layer (fastai's) or every layer (``pool_layers=all``, ``AllLayersAWD_LSTM``); one output per class or
    label, or one number squashed into ``y_range`` (a regression)."""
    head = info["head"]
    pool_layers = head.get("pool_layers", "last")  # entries written before the option pooled the last layer
    config = {k: v * info["drop_mult"] if k.endswith("_p") else v for k, v in info["config"].items()}
    output_p = config.pop("output_p")
    config = {k: v for k, v in config.items() if k not in _DECODER_KEYS}
    arch = AllLayersAWD_LSTM if pool_layers == "all" else ARCHS[info["arch"]]
    encoder = SentenceEncoder(head["bptt"], arch(info["vocab_size"], **config), pad_idx=1, max_len=head["max_len"])
    layers = [pooled_width(info["config"], pool_layers) * 3, *head["lin_ftrs"],
              Task.of_entry(info).n_outputs(info["classes"])]
    return SequentialRNN(encoder, PoolingLinearClassifier(layers, [output_p, *head["ps"]], bptt=head["bptt"],
                                                          y_range=head.get("y_range")))


def encoder_of(model: nn.Module) -> nn.Module:
    """The AWD-LSTM inside an LM (``model[0]``) or a classifier (``model[0].module``)."""
    enc = model[0]
    return getattr(enc, "module", enc)
