"""Mixed precision as config (``train.precision``): fp32, bf16, fp16 or auto, with fp32 master weights.

On CUDA this is fastai's ``MixedPrecision`` (``to_fp16``/``to_bf16``). fastai's callback only autocasts on
CUDA, so on CPU (``to_fp16`` does nothing there) ``CpuBf16Autocast`` runs the forward pass and loss under
``torch.autocast("cpu", bfloat16)``; CPUs with bf16 instructions (AMX, AVX512-BF16) run the LSTM matmuls faster
that way.
Not every CPU can: without AVX-512, oneDNN has no bf16 LSTM and PyTorch fails on the first batch ("could not
create a primitive descriptor"), so ``bf16`` is refused there before anything runs, and ``auto`` picks bf16
only where the CPU has bf16 instructions (AVX512-BF16 or AMX), else fp32.
"""

from __future__ import annotations

import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision
from fastai.torch_core import to_float

from ulmfit.errors import UsageError

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
RESOLVED = ("fp32", "bf16", "fp16")  # what ``auto`` becomes on a given device


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


def cpu_runs_bf16() -> bool:
    """oneDNN (PyTorch's CPU LSTM) has bf16 kernels on this CPU: AVX-512 at least."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_has_bf16_instructions() -> bool:
    """AVX512-BF16 or AMX: the CPUs on which bf16 is faster than fp32 (on plain AVX-512 oneDNN emulates it)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private torch.cpu API: probe, don't assume
    return cpu_runs_bf16() and any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run on ``device`` uses (``auto`` resolved); a clear error where it cannot run.
    Stages call it before reading data, so a bad choice fails in seconds, not at the first batch."""
    if precision not in PRECISIONS:
        raise UsageError(f"train.precision={precision!r} is unknown; use one of {', '.join(PRECISIONS)}.")
    if device.type == "cuda":
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if precision == "fp16":
        raise UsageError("train.precision=fp16 needs a CUDA GPU; on CPU use train.precision=bf16, fp32 or auto.")
    if precision == "auto":
        return "bf16" if cpu_has_bf16_instructions() else "fp32"
    if precision == "bf16" and not cpu_runs_bf16():
        raise UsageError("train.precision=bf16: this CPU has no bf16 support in oneDNN (it needs AVX-512; "
                         "AVX512-BF16 or AMX make it fast), so PyTorch's LSTM cannot run in bf16 here. Use "
                         "train.precision=fp32, or train.precision=auto (bf16 where the CPU has it, else fp32).")
    return precision


def scoring_in_fp32(learn):
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
