"""Console summaries of a run's metrics."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Mapping


def print_table(title: str, metrics: Mapping[str, Any]) -> None:
    """Print the scalar metrics as an aligned two-column table."""
    rows = [(k, _fmt(v)) for k, v in metrics.items() if isinstance(v, (int, float, str, bool))]
    width = max((len(k) for k, _ in rows), default=10)
    print(f"\n== {title}")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 1000 else f"{v:.4g}"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def hardware() -> str:
    """CPU model, cores and memory (and GPU if any), for results headers."""
    import torch
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        mem_s = f", {mem / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        mem_s = ""
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu} ({cpu_bf16()}), {os.cpu_count()} cores{mem_s}{gpu}; torch {torch.__version__}"


def cpu_bf16() -> str:
    """What the CPU does with train.precision=bf16: CPU training speed depends on which of these it is. Under
    ISA caps (``ulmfit.emulation``) the caps and the real CPU come first, so the answer is not read as the CPU's."""
    from ulmfit.emulation import describe
    from ulmfit.hardware import cpu_has_bf16_instructions, cpu_runs_bf16
    if cpu_has_bf16_instructions():
        kind = "bf16 instructions: AVX512-BF16/AMX"
    else:
        kind = "AVX-512 without bf16 instructions" if cpu_runs_bf16() else "no AVX-512: no CPU bf16"
    return f"{emulated}; as capped: {kind}" if (emulated := describe()) else kind
