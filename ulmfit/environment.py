"""What a run ran on: versions, git commit, hardware, allocator and peak memory, recorded in every store entry's
lineage (``environment``) so that a result can be traced to the code and machine that produced it."""

from __future__ import annotations

import platform
import subprocess
from typing import Any

import torch

from ulmfit import PACKAGE_DIR, __version__
from ulmfit.allocator import active_allocator
from ulmfit.distributed import launched_processes
from ulmfit.emulation import describe


def git_commit() -> str | None:
    """The checkout's commit (None for an installed wheel, or without git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def peak_rss_mb() -> float | None:
    """This process's peak resident memory so far, in MB (None where the platform does not report it)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1024 * 1024) if platform.system() == "Darwin" else kb / 1024, 1)  # macOS reports bytes


def environment_info() -> dict[str, Any]:
    """Versions and hardware recorded in every entry's lineage."""
    import fastai
    return {
        "ulmfit": __version__, "git_commit": git_commit(), "python": platform.python_version(),
        "torch": torch.__version__, "fastai": fastai.__version__, "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "processes": launched_processes(),  # > 1: data-parallel training (accelerate launch)
        "malloc": active_allocator(),  # glibc's fragments on long CPU runs (ulmfit.allocator)
        "cpu_emulation": describe(),  # ISA caps that made this CPU run as another (None: as it is)
        "peak_rss_mb": peak_rss_mb(),  # of this process until the entry was written
        "peak_gpu_mb": peak_gpu_mb(),  # likewise, tensors on the GPU (None without one)
    }


def peak_gpu_mb() -> float | None:
    """Peak GPU memory held by this process's tensors so far (``torch.cuda.max_memory_allocated``), in MB."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)
