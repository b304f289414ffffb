"""Multi-process data-parallel training on existing engines: fastai's ``DistributedTrainer`` (Accelerate's
``Accelerator`` + PyTorch DDP underneath), started by ``accelerate launch``:

    accelerate launch --multi_gpu --num_processes 4 -m ulmfit stage=lm_finetune ...   # 4 GPUs (NCCL)
    accelerate launch --multi_gpu --num_processes 2 -m ulmfit stage=classify ...       # no GPU: 2 CPU processes (gloo)

Every process builds the same learner (same seed, same data); during each fit the model is wrapped in DDP and
each process trains on its share of the batches (fastai gathers the losses and metrics of all processes, so the
per-epoch history covers the whole validation set). Rank 0 tokenizes first (the others then hit its cache),
writes the checkpoints, and after training evaluates on the test set and writes the store entry alone; the
other processes stop when training ends.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
from fastai.callback.progress import ProgressCallback
from fastai.torch_core import num_distrib, rank_distrib

__all__ = ["data_parallel", "end_data_parallel", "is_distributed", "is_main_process", "launched_processes",
           "local_device", "main_process_first", "unwrap"]
_LAUNCHED = max(num_distrib(), 1)  # as started (end_data_parallel lowers WORLD_SIZE once training is over)


def launched_processes() -> int:
    """How many processes ``accelerate launch``/``torchrun`` started for this job (1 for a plain run)."""
    return _LAUNCHED


def is_distributed() -> bool:
    """Started by ``accelerate launch``/``torchrun`` with more than one process."""
    return num_distrib() > 1


def is_main_process() -> bool:
    return rank_distrib() == 0


def local_device(device: torch.device) -> torch.device:
    """Each process of a multi-GPU run uses its own GPU (``LOCAL_RANK``)."""
    if is_distributed() and device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def main_process_first():
    """Rank 0 runs the block first (e.g. tokenizes and writes the cache), then the others (cache hits)."""
    if not is_distributed():
        return nullcontext()
    from accelerate import PartialState  # initialises the process group from accelerate's environment
    return PartialState(cpu=_cpu_only()).main_process_first()


def _cpu_only() -> bool:
    # Accelerate only sets up multi-process CPU training (gloo) when told the run is on CPU.
    return not torch.cuda.is_available()


@functools.cache
def _trainer_class() -> type:
    """fastai's ``DistributedTrainer`` wrapping loaders in a ``DistributedDL`` that also works with gloo (CPU).
    Built once, on first use (single-process runs never import fastai.distributed)."""
    from fastai.distributed import DistributedDL, DistributedTrainer

    class PortableDistributedDL(DistributedDL):
        """fastai's ``DistributedDL`` broadcasts rank 0's batch order as a CUDA tensor (NCCL only); this one
        uses the device the process group's backend needs."""

        def _broadcast(self, t, rank):
            t = torch.tensor(t, dtype=torch.long)
            if torch.distributed.get_backend() == "nccl":
                t = t.cuda()
            torch.distributed.broadcast(t, rank)
            return t.cpu().tolist()

    class PortableDistributedTrainer(DistributedTrainer):
        def _wrap_dl(self, dl):
            if isinstance(dl, PortableDistributedDL):
                return dl
            return PortableDistributedDL(dl, device=self.learn.model.device)

    return PortableDistributedTrainer


@contextmanager
def data_parallel(learn) -> Iterator[None]:
    """Within the block, ``learn.fit`` trains data-parallel across the launched processes (no-op otherwise)."""
    if not is_distributed():
        yield
        return
    # sync_bn=False: the classifier head's BatchNorm keeps per-process statistics (no extra all-reduce per step)
    trainer = _trainer_class()(sync_bn=False, cpu=_cpu_only())
    learn.add_cb(trainer)
    progress = [cb for cb in learn.cbs if isinstance(cb, ProgressCallback)] if not is_main_process() else []
    for cb in progress:
        learn.remove_cb(cb)
    try:
        yield
    finally:
        learn.remove_cb(trainer)
        for cb in progress:
            learn.add_cb(cb)


def end_data_parallel() -> None:
    """Training is over: leave the process group so that rank 0 evaluates and writes alone. fastai gathers every
    metric across processes while ``WORLD_SIZE`` > 1, which would wait forever for ranks that have stopped."""
    if not is_distributed():
        return
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    os.environ["WORLD_SIZE"] = "1"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself, also while DDP wraps it during a fit."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
