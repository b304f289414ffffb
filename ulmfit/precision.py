"""Mixed precision as config (``train.precision``): fp32, bf16, fp16 or auto, with fp32 master weights.

On CUDA this is fastai's ``MixedPrecision`` (``to_fp16``/``to_bf16``). fastai's callback only autocasts on
CUDA, so on CPU (``to_fp16`` does nothing there) ``CpuBf16Autocast`` runs the forward pass and loss under
``torch.autocast("cpu", bfloat16)``; CPUs with bf16 instructions (AMX, AVX512-BF16) run the LSTM matmuls faster
that way.
Which precision a run uses (``auto`` resolved, and refused where the device cannot run it) is decided with the
device in ``ulmfit.hardware``; this module applies it to a learner.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision
from fastai.torch_core import to_float

from ulmfit.hardware import resolve_precision  # noqa: F401  (where it was: tests/test_recipe_defaults.py imports it here)
from ulmfit.options import RESOLVED_PRECISIONS as RESOLVED


class CpuBf16Autocast(Callback):
    """bf16 autocast for the forward pass and loss on CPU; weights, gradients and Adam stay fp32.

    bf16 has fp32's exponent range, so unlike fp16 no loss scaling is needed."""
    order = MixedPrecision.order

    def before_fit(self) -> None:
        self.autocast = torch.autocast("cpu", dtype=torch.bfloat16)

    def before_batch(self) -> None:
        self.autocast.__enter__()

    def after_pred(self) -> None:
        # The loss in fp32: converted here, unless the loss does its own fp32 math on low-precision logits
        # (ulmfit.losses, for the LM's vocabulary-sized output).
        if not getattr(self.learn.loss_func, "accepts_low_precision", False):
            self.learn.pred = to_float(self.pred)

    def after_loss(self) -> None:
        self.autocast.__exit__(None, None, None)


def scoring_in_fp32(learn) -> AbstractContextManager:
    """A context in which ``learn`` predicts in fp32 whatever it trained in: reported test figures come in one
    precision, the one ``stage=evaluate`` and ``stage=predict`` use on a stored entry."""
    return learn.removed_cbs([cb for cb in learn.cbs if isinstance(cb, (CpuBf16Autocast, MixedPrecision))])


def apply_precision(learn, precision: str):
    """Add the callback that gives ``learn`` ``precision`` on its device: a value ``resolve_precision`` returned
    (``auto`` already decided), so a run resolves it once, before it reads any data, and records what ran."""
    if precision not in RESOLVED:
        raise ValueError(f"precision={precision!r}: pass what resolve_precision returns ({', '.join(RESOLVED)}).")
    if precision == "fp32":
        return learn
    if learn.dls.device.type == "cuda":
        return learn.to_bf16() if precision == "bf16" else learn.to_fp16()
    learn.add_cb(CpuBf16Autocast())
    return learn
