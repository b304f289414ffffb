"""Running this CPU as one with AVX2 only (no AVX-512, so no CPU bf16), to measure what such a CPU would where
none is at hand. Opt-in only: ``python -m bench --emulate-avx2``, or a child started with ``AVX2_ENV``.

Three libraries choose their kernels by the CPU's instruction sets, and each takes a cap from the environment
at its first use: MKL (the fp32 GEMMs, most of a training step), ATen's vectorised ops, and oneDNN (the LSTM; its
cap also makes torch report no bf16 support, so ``train.precision=auto`` resolves to fp32 as on an AVX2 CPU).
It caps instructions, not caches, memory bandwidth or clocks, so it approximates an AVX2 machine and is not
one: every description of the hardware (``ulmfit.report.hardware``, each entry's lineage) names the caps, so an
emulated figure is never read as a real AVX2 machine's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

AVX2_ENV = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2"}
REAL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")  # what the CPU itself has, named beside the caps


def isa_caps(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Those of ``AVX2_ENV``'s variables that are set in ``env`` (default: this process's), whatever their value:
    any of them changes the kernels that run."""
    env = os.environ if env is None else env
    return {k: env[k] for k in AVX2_ENV if k in env}


def cpu_flags() -> set[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    try:
        line = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags"))
    except (OSError, StopIteration):
        return set()
    return set(line.split(":", 1)[1].split())


def describe() -> str | None:
    """None without caps; else the caps, the kernels torch dispatches to under them, and the real CPU's
    instruction sets, e.g. 'EMULATED AVX2-only (MKL_ENABLE_INSTRUCTIONS=AVX2 ...; torch CPU capability AVX2) on a
    CPU with avx2 avx512f avx512_bf16 amx_tile'."""
    caps = isa_caps()
    if not caps:
        return None
    import torch
    kind = "AVX2-only" if caps == AVX2_ENV else "partial ISA caps"
    real = " ".join(f for f in REAL_FLAGS if f in cpu_flags()) or "unknown instruction sets"
    return (f"EMULATED {kind} ({' '.join(f'{k}={v}' for k, v in caps.items())}; torch CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}) on a CPU with {real}")
