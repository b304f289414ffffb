"""Every device-dependent ``auto`` option, resolved in one place before a stage reads any data: the device
(``train.device``), the precision (``train.precision``), how often the host reads the loss
(``train.host_sync_every``) and which LM loss runs (``train.lm_loss``); and what the CPU can do in bf16.

On CUDA, ``precision=auto`` is bf16 where the GPU supports it, else fp16. On a CPU it is bf16 only where the CPU
has bf16 instructions (AVX512-BF16 or AMX), else fp32: without AVX-512, oneDNN has no bf16 LSTM and PyTorch fails
on the first batch ("could not create a primitive descriptor"), so ``bf16`` is refused there before anything runs.
How a resolved precision is applied to a learner is ``ulmfit.precision``.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import torch

from ulmfit.distributed import local_device
from ulmfit.errors import UsageError
from ulmfit.options import AUTO, PRECISIONS

log = logging.getLogger(__name__)
HOST_SYNC_EVERY_CUDA = 100  # a host read waits for every queued kernel: on a GPU, read the loss check this seldom


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU."""
    if name == AUTO:
        return local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"train.device={name} but no CUDA GPU is visible; use train.device=cpu or auto.")
    return local_device(torch.device(name))


def resolve_hardware(train_cfg: Mapping[str, Any]) -> tuple[torch.device, str]:
    """The device and precision (``auto`` resolved) a stage trains with, checked before it reads any data."""
    device = resolve_device(train_cfg["device"])
    precision = resolve_precision(train_cfg["precision"], device)
    log.info("training on %s in %s", device, precision)
    return device, precision


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
        if precision == AUTO:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if precision == "fp16":
        raise UsageError("train.precision=fp16 needs a CUDA GPU; on CPU use train.precision=bf16, fp32 or auto.")
    if precision == AUTO:
        return "bf16" if cpu_has_bf16_instructions() else "fp32"
    if precision == "bf16" and not cpu_runs_bf16():
        raise UsageError("train.precision=bf16: this CPU has no bf16 support in oneDNN (it needs AVX-512; "
                         "AVX512-BF16 or AMX make it fast), so PyTorch's LSTM cannot run in bf16 here. Use "
                         "train.precision=fp32, or train.precision=auto (bf16 where the CPU has it, else fp32).")
    return precision


def resolve_host_sync_every(value: str | int, device: torch.device) -> int:
    """``train.host_sync_every``: ``auto`` = every step on CPU (reads cost nothing there), else
    ``HOST_SYNC_EVERY_CUDA``."""
    if value == AUTO:
        return 1 if device.type == "cpu" else HOST_SYNC_EVERY_CUDA
    return int(value)


def resolve_lm_loss(value: str, device: torch.device) -> str:
    """``train.lm_loss``: ``auto`` = ``blockwise`` on CPU, where the memory traffic of fp32 logits dominates a step,
    ``fastai`` on CUDA, where the block loop's many small kernels would cost more than that traffic."""
    if value == AUTO:
        return "blockwise" if device.type == "cpu" else "fastai"
    return value
