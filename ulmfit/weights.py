"""Model weights between the store, the stages and fastai's published files: one place for how a network is
rebuilt from an entry and which of its tensors another stage takes.

- ``load_model(entry)``: the network an entry's ``model.json`` describes, with the weights of its ``model.safetensors``.
- LM -> LM (``lm_finetune``): the parent's weights, embedding re-indexed for the new vocabulary (``transferred_lm_weights``).
- LM -> classifier (``classify``): the parent LM's encoder, its module 0 (``load_encoder``). Entries written before
  this also hold ``encoder.safetensors``, a copy of those tensors; it is not read, so such entries load as before.
- fastai's published WikiText-103 AWD-LSTM (``lstm_fwd.pth`` / ``lstm_bwd.pth`` + ``itos_wt103.pkl``), read without
  running any code from the files (``fastai_language_model``).

fastai's files are pickles, and unpickling can import and call anything. So:
- weights: ``torch.load(weights_only=True)``, torch's restricted unpickler (tensors and plain containers only);
- vocabulary: an ``Unpickler`` that refuses every global, which a list of strings never needs.
A file that needs more (a crafted payload, or an arbitrary object) is refused before it runs. The import stage
writes the result as an ordinary store entry (safetensors + JSON), so nothing downstream ever reads a pickle.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from fastai.text.learner import match_embeds

from ulmfit.errors import UsageError
from ulmfit.models import build_classifier, build_language_model, encoder_of, model_info
from ulmfit.store import Entry


def load_model(entry: Entry, drop_mult: float | None = None) -> torch.nn.Module:
    """The LM or classifier ``entry`` holds, rebuilt from its ``model.json`` (``drop_mult``: another dropout
    scale than it trained with, e.g. 1.0 for evaluation) with its weights; a mismatch is refused by
    ``Entry.load_weights`` with the differing shapes."""
    info = entry.model_info
    if info["kind"] == "classifier":
        model = build_classifier(info if drop_mult is None else {**info, "drop_mult": drop_mult})
    else:
        model = build_language_model(info, drop_mult)
    entry.load_weights(model)
    return model


def transferred_lm_weights(parent: Entry, new_vocab: list[str]) -> dict[str, torch.Tensor]:
    """The parent LM's weights with its embedding re-indexed for ``new_vocab`` (fastai's ``match_embeds``):
    rows of tokens the parent knew are kept, new tokens get the mean embedding (and mean decoder bias)."""
    return match_embeds(load_model(parent).state_dict(), parent.vocab, list(new_vocab))


def load_encoder(parent: Entry, model: torch.nn.Module) -> None:
    """Load the parent LM's AWD-LSTM encoder (module 0 of the LM in its ``model.safetensors``) into ``model``, an
    LM or a classifier; a model built with another architecture or vocabulary size is refused."""
    try:
        encoder_of(model).load_state_dict(encoder_of(load_model(parent)).state_dict())
    except RuntimeError as e:
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e)[:200])
        raise UsageError(f"The encoder of {parent.ref} does not fit this model ({detail}); build the model from "
                         f"the parent's model.json.") from None


# ---- fastai's published WikiText-103 LM --------------------------------------------------------------------------
_RNN_RE = re.compile(r"^0\.rnns\.(\d+)\.weight_hh_l0_raw$")


class _NoGlobals(pickle.Unpickler):
    """Loads only pickles made of built-in values (lists, strings, numbers, dicts): any class or function
    reference -- how pickle payloads run code -- is refused before it is imported."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load global '{module}.{name}'")


def read_vocab(path: Path) -> list[str]:
    """fastai's ``itos_*.pkl`` (a pickled list of tokens) or a JSON list; index = token id."""
    try:
        if path.suffix == ".json":
            vocab = json.loads(path.read_text(encoding="utf-8"))
        else:
            with open(path, "rb") as fh:
                vocab = _NoGlobals(fh).load()
    except FileNotFoundError:
        raise UsageError(f"Vocabulary file {path} does not exist; set stage.vocab=<fastai's itos_wt103.pkl>.") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise UsageError(f"Refused vocabulary {path}: {e}. It is not a plain pickled list of tokens (a file that "
                         f"needs Python objects could run code when loaded); use fastai's itos_wt103.pkl or a JSON "
                         f"list of tokens.") from None
    if not isinstance(vocab, list) or not vocab or not all(isinstance(t, str) for t in vocab):
        raise UsageError(f"Vocabulary {path} is not a non-empty list of token strings.")
    return vocab


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A fastai AWD-LSTM LM state dict (``{'model': ...}`` wrappers from ``Learner.save`` accepted)."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"Weights file {path} does not exist; set stage.weights=<fastai's lstm_fwd.pth>.") from None
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))  # torch names the refused class/function
        what = f"it references {found.group(1)}" if found else "it holds Python objects, not only tensors"
        raise UsageError(f"Refused weights {path}: {what}. Loading it could run code; only plain state dicts of "
                         f"tensors are imported.") from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise UsageError(f"Cannot read weights {path} ({str(e).splitlines()[0][:200]}): the file is truncated or "
                         f"not a torch state dict.") from None
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UsageError(f"{path} is not a state dict of tensors.")
    return sd


def architecture(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    """emb_sz / n_hid / n_layers / vocab size of a fastai AWD-LSTM LM state dict, read from its shapes."""
    layers = sorted(int(m.group(1)) for k in sd if (m := _RNN_RE.match(k)))
    if "0.encoder.weight" not in sd or not layers:
        raise UsageError("The weights are not a fastai AWD-LSTM language model (no '0.encoder.weight' / "
                         "'0.rnns.N.weight_hh_l0_raw'); only fastai's AWD-LSTM LM weights can be imported.")
    vocab_size, emb_sz = sd["0.encoder.weight"].shape
    return {"vocab_size": int(vocab_size), "emb_sz": int(emb_sz), "n_layers": len(layers),
            "n_hid": int(sd["0.rnns.0.weight_hh_l0_raw"].shape[1])}


def fastai_language_model(weights_path: Path, vocab_path: Path, model_cfg: Mapping[str, Any], backwards: bool
                          ) -> tuple[torch.nn.Module, list[str], dict[str, Any]]:
    """fastai's AWD-LSTM LM files as a model of the ``model`` config, or a refusal naming the sizes that differ.
    Returns (model, vocabulary, ``model.json`` info)."""
    vocab, sd = read_vocab(vocab_path), read_weights(weights_path)
    found = architecture(sd)
    expected = {"vocab_size": len(vocab), **{k: int(model_cfg[k]) for k in ("emb_sz", "n_hid", "n_layers")}}
    diff = {k: (found[k], expected[k]) for k in expected if found[k] != expected[k]}
    if diff:
        shown = ", ".join(f"{k} {f} in the weights vs {e} expected" for k, (f, e) in diff.items())
        hint = ("the vocabulary file does not belong to these weights" if "vocab_size" in diff else
                "pick the model config of these weights (fastai's WT103 model is model=awd_lstm)")
        raise UsageError(f"{weights_path} does not match: {shown}; {hint}.")
    info = model_info(model_cfg, len(vocab), 1.0, backwards=backwards)
    model = build_language_model(info)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise UsageError(f"{weights_path} does not fit fastai's AWD-LSTM (missing {sorted(missing)[:4]}, unexpected "
                         f"{sorted(unexpected)[:4]}).")
    return model, vocab, info
