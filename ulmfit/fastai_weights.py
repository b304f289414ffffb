"""fastai's published WikiText-103 AWD-LSTM (``lstm_fwd.pth`` / ``lstm_bwd.pth`` + ``itos_wt103.pkl``), read
without running any code from the files.

Both files are pickles, and unpickling can import and call anything. So:
- weights: ``torch.load(weights_only=True)``, torch's restricted unpickler (tensors and plain containers only);
- vocabulary: an ``Unpickler`` that refuses every global, which a list of strings never needs.
A file that needs more (a crafted payload, or an arbitrary object) is refused before it runs. The result is
converted into an ordinary store entry (safetensors + JSON), so nothing downstream ever reads a pickle.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ulmfit.errors import UsageError

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
