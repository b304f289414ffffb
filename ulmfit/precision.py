"""Mixed precision as config (``train.precision``): fp32, bf16 or fp16, with fp32 master weights.

On CUDA this is fastai's ``MixedPrecision`` (``to_fp16``/``to_bf16``). fastai's callback only autocasts on
CUDA, so on CPU (``to_fp16`` does nothing there) ``CpuBf16Autocast`` runs the forward pass and loss under
``torch.autocast("cpu", bfloat16)``; CPUs with AMX run the LSTM matmuls about twice as fast that way.
"""

from __future__ import annotations

import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision
from fastai.torch_core import to_float

from ulmfit.errors import UsageError

PRECISIONS = ("fp32", "bf16", "fp16")


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


def apply_precision(learn, precision: str):
    """Add the callback that gives ``learn`` the requested precision on its device."""
    if precision not in PRECISIONS:
        raise UsageError(f"train.precision={precision!r} is unknown; use one of {', '.join(PRECISIONS)}.")
    if precision == "fp32":
        return learn
    if learn.dls.device.type == "cuda":
        return learn.to_bf16() if precision == "bf16" else learn.to_fp16()
    if precision == "fp16":
        raise UsageError("train.precision=fp16 needs a CUDA GPU; on CPU use train.precision=bf16 (or fp32).")
    learn.add_cb(CpuBf16Autocast())
    return learn
