"""Checkpoints of a run in progress, and resuming from them (``resume=true``).

While a stage trains, its latest state lives beside the entry it will write, in
``<store>/<stage>/.resume-<run>/epoch-NNNN/`` (NNNN counts checkpoints; hidden: never listed or loaded as an
entry). A checkpoint is written after every finished epoch and, for language models, also within an epoch every
``train.checkpoint_minutes`` of training, so a long epoch (a pass over a 100M-token corpus) loses at most that much:

    model.safetensors      the weights
    optimizer.safetensors  the optimizer's tensors (Adam moments), one key per parameter and statistic
    rng.safetensors        torch's CPU (and CUDA) generator states
    position.safetensors   within an epoch only: the epoch's document order and the LSTM's hidden state
    KeepBestEpoch.safetensors  with train.monitor: the weights of the best epoch so far
    state.json             where training stands (phase, epochs done in it, finished phases' records), the
                           optimizer's hyper-parameters and counters, Python/NumPy/DataLoader RNG states,
                           fastai's Recorder rows and smoothed loss, the curves so far, the resolved config,
                           the best value so far and the epochs without improvement (train.monitor/patience)

Each epoch's directory is written under a temporary name and renamed into place, then older ones are
deleted, so a kill at any moment leaves at least one complete checkpoint. Nothing is unpickled on resume.
The directory is removed once the entry is complete.

Resuming restores everything a seeded run depends on, so an interrupted and resumed run ends with the same
weights and metrics as an uninterrupted one (tests/test_resume.py kills a run with SIGKILL to check it).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.core import Callback
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file, save_model

from ulmfit.distributed import unwrap
from ulmfit.errors import UsageError
from ulmfit.files import atomic_path

log = logging.getLogger(__name__)
PREFIX = ".resume-"
# Config keys that may differ between an interrupted run and its resumption without changing what it computes
# (where files go, how it is tracked) -- and `resume` itself.
IGNORED_ON_RESUME = ("resume", "paths", "logger", "tokenizer.n_workers")


@dataclass
class ResumeState:
    """What a checkpoint says about the run: where to continue and what was recorded before."""

    path: Path
    phase: int                      # the phase (fit) to continue
    epoch: int                      # epochs of that phase already done
    records: list[dict[str, Any]]   # records of the phases finished before it
    extras: dict[str, Any]          # stage-specific values measured before training (e.g. perplexity before)
    seconds: float                  # training seconds spent so far
    state: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def batch(self) -> int:
        """Batches done of the epoch in progress (0: the checkpoint is at an epoch boundary)."""
        return int((self.state.get("position") or {}).get("batch", 0))

    @property
    def label(self) -> str:
        within = f", {self.batch} batches into the next" if self.batch else ""
        return f"phase {self.phase}, {self.epoch} epoch(s) into it{within}"


def checkpoint_dir(store_root: str | os.PathLike, stage: str, name: str) -> Path:
    """Where run ``stage/name`` keeps its checkpoints while it trains."""
    return Path(store_root) / stage / f"{PREFIX}{name}"


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in ``directory`` (each is renamed into place whole), or None."""
    done = sorted(p for p in directory.glob("epoch-*") if (p / "state.json").is_file()) if directory.is_dir() else []
    return done[-1] if done else None


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in IGNORED_ON_RESUME)


class RunCheckpoint:
    """The checkpoints of one run (``stage``/``name``) in a store."""

    def __init__(self, store_root: Path, stage: str, name: str, cfg: DictConfig):
        self.dir = checkpoint_dir(store_root, stage, name)
        self.stage, self.name = stage, name
        self.config = OmegaConf.to_container(cfg, resolve=True)
        self.saved_epochs = 0  # checkpoints written by this process (generation counter continues on resume)
        self.last: Path | None = None
        self.resumed: list[dict[str, Any]] = []  # for the lineage: each checkpoint this run continued from

    # ---- discovery -------------------------------------------------------------------------------------------
    def prepare(self, resume: bool) -> ResumeState | None:
        """Check the run may start (or continue) and return the state to resume from, if any."""
        latest = latest_checkpoint(self.dir)
        if not resume:
            if latest is not None:
                raise UsageError(f"Run '{self.stage}/{self.name}' was interrupted and has a checkpoint in {self.dir}. "
                                 f"Continue it with resume=true, or delete that directory to start over.")
            return None
        if latest is None:
            raise UsageError(f"resume=true but run '{self.stage}/{self.name}' has no checkpoint (looked in "
                             f"{self.dir}). Check run_name, or drop resume=true to start a new run.")
        state = self._read_state(latest)
        changed = self._check_config(state["config"])
        self.saved_epochs, self.last = state["generation"], latest
        self.resumed = [*state.get("resumed", []), {"checkpoint": latest.name, "phase": state["phase"],
                                                    "epoch": state["epoch"], "changed": changed}]
        rs = ResumeState(latest, state["phase"], state["epoch"], state["records"], state["extras"], state["seconds"],
                         state)
        log.info("Resuming %s/%s from %s (%s)", self.stage, self.name, latest, rs.label)
        return rs

    def _read_state(self, path: Path) -> dict[str, Any]:
        try:
            return json.loads((path / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # JSONDecodeError, non-UTF-8 bytes
            raise UsageError(f"Checkpoint {path} is unreadable ({e}); delete {self.dir} to start the run "
                             f"over.") from None

    def _check_config(self, saved: dict[str, Any]) -> dict[str, list]:
        old, new = _flat(saved), _flat(self.config)
        if "backwards" in old:  # a checkpoint written before `direction` replaced the `backwards` flag
            old["direction"] = "backward" if old.pop("backwards") else "forward"
        changed = sorted(k for k in old.keys() | new.keys() if not _ignored(k) and old.get(k) != new.get(k))
        fatal = [k for k in changed if not k.startswith("train.")]
        if fatal:
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in fatal[:5])
            raise UsageError(f"resume=true with a different config than the interrupted run ({shown}). Resume with "
                             f"the same options (only train.* may change), or start a new run without resume=true.")
        if changed:  # e.g. a lower LR after a divergence: allowed, and said
            log.warning("Resuming with changed training options: %s",
                        ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed))
        return {k: [old.get(k), new.get(k)] for k in changed}

    # ---- writing ---------------------------------------------------------------------------------------------
    def save(self, learn, phase: int, epoch: int, records: list[dict[str, Any]], extras: dict[str, Any],
             seconds: float, within_epoch: bool = False) -> Path:
        """Write the state after ``epoch`` epochs of ``phase`` atomically; drop older checkpoints.
        ``within_epoch``: the state after the current batch of epoch ``epoch`` (the next one), with what continuing
        that epoch needs: its document order, the hidden state, the schedule's position."""
        self.saved_epochs += 1
        final = self.dir / f"epoch-{self.saved_epochs:04d}"
        with atomic_path(final, directory=True) as tmp:
            save_model(unwrap(learn.model), str(tmp / "model.safetensors"))
            opt_tensors, opt_state = _optimizer_state(learn.opt)
            save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
            save_file(_torch_rng(), str(tmp / "rng.safetensors"))
            position = None
            if within_epoch:
                position = {"batch": learn.train_iter - learn.epoch * learn.n_iter, "train_iter": learn.train_iter,
                            "pct_train": learn.pct_train}
                save_file(_position_tensors(learn), str(tmp / "position.safetensors"))
            state = {"generation": self.saved_epochs, "phase": phase, "epoch": epoch, "records": records,
                     "extras": extras, "seconds": seconds, "optimizer": opt_state,
                     "rng": {"python": _py_state(random.getstate()), "numpy": _np_state(),
                             "dataloaders": [_py_state(_base(dl).rng.getstate()) for dl in learn.dls.loaders]},
                     "recorder": _recorder_state(learn), "scaler": _scaler_state(learn),
                     "curves": _curve_state(learn), "config": self.config, "resumed": self.resumed,
                     "position": position, "trackers": _tracker_state(learn, tmp)}
            (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
        for old in self.dir.glob("epoch-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        self.last = final
        return final

    def discard(self) -> None:
        """The entry is complete: the checkpoints are no longer needed."""
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- restoring ----------------------------------------------------------------------------------------------
def restore_training_state(learn, rs: ResumeState) -> None:
    """Weights, optimizer and curves into a learner whose phase is already set up (``freeze_to`` done,
    optimizer created). RNG states are restored separately, last, by ``restore_rng``."""
    learn.model.load_state_dict(_load(rs.path / "model.safetensors"), strict=False)
    _load_optimizer(learn.opt, _load(rs.path / "optimizer.safetensors"), rs.state["optimizer"])
    scaler = getattr(getattr(learn, "mixed_precision", None), "scaler", None)
    if scaler is not None and rs.state.get("scaler"):
        scaler.load_state_dict(rs.state["scaler"])
    rec = getattr(learn, "curve_recorder", None)
    if rec is not None and rs.state.get("curves"):
        rec.step, rec.data = rs.state["curves"]["step"], rs.state["curves"]["data"]


def restore_rng(learn, rs: ResumeState) -> None:
    """Python, NumPy, DataLoader and torch RNG states as they were when the checkpoint was written."""
    rng = rs.state["rng"]
    random.setstate(_py_tuple(rng["python"]))
    np.random.set_state((rng["numpy"][0], np.array(rng["numpy"][1], dtype=np.uint32), *rng["numpy"][2:]))
    for dl, st in zip(learn.dls.loaders, rng["dataloaders"]):
        _base(dl).rng.setstate(_py_tuple(st))
    t = _load(rs.path / "rng.safetensors")
    torch.set_rng_state(t["cpu"])
    if torch.cuda.is_available():
        cuda = [t[k] for k in sorted((k for k in t if k.startswith("cuda.")), key=lambda k: int(k.split(".")[1]))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)


def load_tracker_weights(rs: ResumeState, name: str) -> dict[str, torch.Tensor] | None:
    """The weights a tracker callback (``KeepBestEpoch``: the best epoch so far) saved in the checkpoint, or None."""
    path = rs.path / f"{name}.safetensors"
    return _load(path) if path.is_file() else None


def _tracker_state(learn, folder: Path) -> dict[str, Any]:
    """The state of the callbacks that choose on validation (best epoch, early stopping): each has
    ``checkpoint_state()`` -> (JSON-able state, weights or None); weights go to ``<class>.safetensors``."""
    out: dict[str, Any] = {}
    for cb in learn.cbs:
        if hasattr(cb, "checkpoint_state"):
            state, weights = cb.checkpoint_state()
            out[type(cb).__name__] = state
            if weights is not None:
                save_file({k: v.contiguous() for k, v in weights.items()},
                          str(folder / f"{type(cb).__name__}.safetensors"))
    return out


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises several types for truncated files
        raise UsageError(f"Checkpoint file {path} is truncated or corrupted ({e}); delete {path.parent.parent} "
                         f"to start the run over.") from None


# ---- fastai callbacks -----------------------------------------------------------------------------------------
class ResumeFit(Callback):
    """Continue a fit ``start_epoch`` epochs in, as fastai's ``fit(start_epoch=...)`` skips them: put back the
    Recorder's rows and smoothed loss and the step counter the LR schedule reads, and drop the empty rows the
    skipped epochs add. From a within-epoch checkpoint, also continue epoch ``start_epoch`` at the batch after
    the checkpoint: same document order, hidden state, schedule position and RNG states."""

    order = 51  # after fastai's Recorder (50) has reset itself in before_fit and logged in after_epoch

    def __init__(self, start_epoch: int, rs: ResumeState):
        self.start_epoch, self.saved, self.rs = start_epoch, rs.state["recorder"], rs
        self.position = rs.state.get("position") if rs.batch else None

    def before_fit(self) -> None:
        rec = self.learn.recorder
        rec.values = [list(v) for v in self.saved["values"]]
        rec.iters = list(self.saved["iters"])
        rec.smooth_loss.count = self.saved["smooth_count"]
        rec.smooth_loss.val = torch.tensor(self.saved["smooth_val"], dtype=torch.float32)
        self.learn.train_iter = self.start_epoch * len(self.dls.train)
        if self.position:
            self.learn.train_iter = self.position["train_iter"]
            tensors = _load(self.rs.path / "position.safetensors")
            _base(self.dls.train).resume_at(tensors["order"].numpy(), self.position["batch"])
            self.hidden = [(tensors[f"hidden.{i}.h"], tensors[f"hidden.{i}.c"])
                           for i in range(len(unwrap(self.model)[0].hidden))]
        self.log_line = self.learn.logger  # the skipped epochs' rows are empty: do not print them
        self.learn.logger = lambda row: None if self.epoch < self.start_epoch else self.log_line(row)

    def before_train(self) -> None:
        if self.position and self.epoch == self.start_epoch:
            self.learn.pct_train = self.position["pct_train"]  # the exact float the schedule had reached

    def before_batch(self) -> None:
        if self.position and self.training:  # the first batch after the checkpoint: the model was reset
            encoder = unwrap(self.model)[0]
            encoder.bs = self.hidden[0][0].shape[1]
            encoder.hidden = [(h.to(self.dls.device), c.to(self.dls.device)) for h, c in self.hidden]
            restore_rng(self.learn, self.rs)  # after the loader's per-epoch draws, as when it was saved
            self.position = None

    def after_fit(self) -> None:
        self.learn.logger = self.log_line

    def after_epoch(self) -> None:
        if self.epoch < self.start_epoch:  # a skipped epoch: fastai's Recorder appended an empty row
            self.learn.recorder.values.pop()
            self.learn.recorder.iters.pop()


class SaveCheckpoints(Callback):
    """Checkpoint after every finished epoch (training and validation done, curves recorded) and, where the
    training loader can continue an epoch (``resume_at``: the LM loader) and ``every_minutes`` is set, after
    the first batch that ends that many minutes of training since the last checkpoint (0: after every batch)."""

    order = 75  # after the Recorder (50), CurveRecorder (60) and fastai's SkipToEpoch (70)

    def __init__(self, checkpoint: RunCheckpoint, phase: int, start_epoch: int, records: list[dict[str, Any]],
                 extras: dict[str, Any], seconds: float, every_minutes: float | None = None):
        self.ckpt, self.phase, self.start_epoch = checkpoint, phase, start_epoch
        self.records, self.extras, self.seconds = records, extras, seconds
        self.every_minutes = every_minutes

    def before_fit(self) -> None:
        self.t0 = self.last = time.perf_counter()
        self.within = self.every_minutes is not None and hasattr(_base(self.dls.train), "resume_at")

    def after_batch(self) -> None:
        if not (self.within and self.training) or self.train_iter - self.epoch * self.n_iter >= self.n_iter:
            return  # the epoch's end saves anyway
        now = time.perf_counter()
        if now - self.last >= self.every_minutes * 60:
            if (stop := getattr(self.learn, "stop_on_non_finite", None)) is not None:
                stop.check()  # a GPU run reads its divergence check seldom: never save weights it has not cleared
            self.ckpt.save(self.learn, self.phase, self.epoch, self.records, self.extras,
                           self.seconds + now - self.t0, within_epoch=True)
            self.last = time.perf_counter()

    def after_epoch(self) -> None:
        if self.epoch >= self.start_epoch:
            seconds = self.seconds + time.perf_counter() - self.t0
            self.ckpt.save(self.learn, self.phase, self.epoch + 1, self.records, self.extras, seconds)
            self.last = time.perf_counter()


# ---- (de)serialisation helpers ----------------------------------------------------------------------------------
def _base(dl):
    return getattr(dl, "dl", dl)  # the loader itself, also while a data-parallel fit wraps it (DistributedDL)


def _py_state(st: tuple) -> list:
    return [st[0], list(st[1]), st[2]]


def _py_tuple(st: list) -> tuple:
    return (st[0], tuple(st[1]), st[2])


def _np_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _torch_rng() -> dict[str, torch.Tensor]:
    t = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        t.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return t


def _optimizer_state(opt) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """fastai ``Optimizer.state_dict()`` split into tensors (safetensors) and plain values (JSON)."""
    sd = opt.state_dict()
    tensors, plain = {}, []
    for i, st in enumerate(sd["state"]):
        rest = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{i}.{k}"] = v.detach().contiguous().cpu()
            else:
                rest[k] = v.item() if hasattr(v, "item") else v
        plain.append(rest)
    hypers = [{k: (v.item() if hasattr(v, "item") else v) for k, v in h.items()} for h in sd["hypers"]]
    return tensors, {"state": plain, "hypers": hypers}


def _load_optimizer(opt, tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    params = list(opt.all_params(with_grad=False).itemgot(0))
    state = [dict(p) for p in plain["state"]]
    if len(state) != len(params):
        raise UsageError(f"The checkpoint's optimizer has {len(state)} parameters, the model {len(params)}: the "
                         f"model changed since the checkpoint. Resume with the original config.")
    for key, t in tensors.items():
        i, name = key.split(".", 1)
        state[int(i)][name] = t.to(params[int(i)].device)
    opt.load_state_dict({"state": state, "hypers": plain["hypers"]})


def _recorder_state(learn) -> dict[str, Any]:
    rec = learn.recorder
    return {"values": [[None if v is None else float(v) for v in row] for row in rec.values],
            "iters": [int(i) for i in rec.iters], "smooth_count": int(rec.smooth_loss.count),
            "smooth_val": float(rec.smooth_loss.val)}


def _scaler_state(learn) -> dict[str, Any] | None:
    scaler = getattr(getattr(learn, "mixed_precision", None), "scaler", None)
    if scaler is None:
        return None
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in scaler.state_dict().items()}


def _position_tensors(learn) -> dict[str, torch.Tensor]:
    """The current epoch's document order and the encoder's hidden state (carried from batch to batch)."""
    out = {"order": torch.from_numpy(np.ascontiguousarray(_base(learn.dls.train).order, dtype=np.int64))}
    for i, (h, c) in enumerate(unwrap(learn.model)[0].hidden):
        out[f"hidden.{i}.h"], out[f"hidden.{i}.c"] = h.detach().cpu().contiguous(), c.detach().cpu().contiguous()
    return out


def _curve_state(learn) -> dict[str, Any] | None:
    rec = getattr(learn, "curve_recorder", None)
    if rec is None:
        return None
    rec.read_losses()  # a checkpoint within an epoch: the losses so far
    return {"step": rec.step, "data": rec.data}
