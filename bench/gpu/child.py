"""A child process of the GPU section, ``python -m bench.gpu <stock|ulmfit|predict|export-sample>``: one run, with
the measurement hooks (peak GPU memory, checkpoint time, torch.profiler tables of a few steps) installed as fastai
callbacks, ``import spacy`` made to fail; what it measured goes to its ``--result`` file as JSON."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.gpu.planning import SAMPLE_EXPORTS, TOKEN_FILES

# What a child measures beside the run itself, written to its --result file as JSON.
_record: dict[str, Any] = {"checkpoint_seconds": 0.0, "peak_gpu_mb": None, "fits": 0}
_profile: dict[str, Any] = {}  # path, skip, active, label: set by a child started with --profile


def _cuda_device(learn) -> Any:
    import torch
    dev = getattr(learn.dls, "device", None)
    return torch.device(dev) if dev is not None and torch.device(dev).type == "cuda" else None


def _callbacks() -> list[type]:
    """fastai callbacks a child adds to every Learner it builds (``defaults.callbacks``), so that ulmfit's own
    stage code runs unchanged: peak GPU memory of each fit, and the profiler."""
    import torch
    from fastai.callback.core import Callback

    class PeakGpuMemory(Callback):
        order = 100  # last: after every callback that runs work of its own

        def before_fit(self) -> None:
            self.dev = _cuda_device(self.learn)
            if self.dev is not None:
                torch.cuda.synchronize(self.dev)
                torch.cuda.reset_peak_memory_stats(self.dev)

        def after_fit(self) -> None:
            _record["fits"] += 1
            if self.dev is not None:
                peak = torch.cuda.max_memory_allocated(self.dev) / 2**20
                _record["peak_gpu_mb"] = max(_record["peak_gpu_mb"] or 0.0, peak)
                _record["peak_gpu_reserved_mb"] = max(_record.get("peak_gpu_reserved_mb") or 0.0,
                                                      torch.cuda.max_memory_reserved(self.dev) / 2**20)

    class ProfileSteps(Callback):
        """torch.profiler over training steps [skip, skip + active) of the first fit; then the tables are
        written and the process ends (a profiled run is not a measurement)."""
        order = 101

        def before_fit(self) -> None:
            self.dev, self.prof = _cuda_device(self.learn), None

        def before_batch(self) -> None:
            if self.training and self.prof is None and self.learn.train_iter >= _profile["skip"]:
                from torch.profiler import ProfilerActivity, profile
                activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.dev is not None else [])
                self._sync()
                self.start_iter, self.prof = self.learn.train_iter, profile(activities=activities)
                self.prof.__enter__()
                self.t0 = time.perf_counter()

        def after_batch(self) -> None:
            if self.training and self.prof is not None and \
                    self.learn.train_iter - self.start_iter >= _profile["active"]:
                self.finish()

        def after_fit(self) -> None:  # a fit shorter than skip + active: profile what there was
            self.finish()

        def _sync(self) -> None:
            if self.dev is not None:
                torch.cuda.synchronize(self.dev)

        def finish(self) -> None:
            steps = self.learn.train_iter - self.start_iter if self.prof is not None else 0
            if self.prof is not None:
                self._sync()
                wall = time.perf_counter() - self.t0
                self.prof.__exit__(None, None, None)
                _record["profile"] = write_profile(self.prof, Path(_profile["path"]), _profile["label"], steps, wall,
                                                   self.dev is not None)
            else:
                _record["profile"] = {"steps": 0, "note": "the fit ended before the profiled steps"}
            _write_record()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # skip the rest of the run: validation, test, the store entry

    return [PeakGpuMemory] + ([ProfileSteps] if _profile else [])


SYNC_OPS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize",
            "cudaMemcpyAsync", "cudaMemcpy")


def write_profile(prof, path: Path, label: str, steps: int, wall: float, cuda: bool) -> dict[str, Any]:
    """The top ops (by GPU time on CUDA, by CPU time on a CPU) to ``path``, and a summary: wall and GPU kernel time
    per step (their ratio: how busy the host kept the GPU) and the host-synchronising calls per step."""
    from torch.autograd import DeviceType
    ka = prof.key_averages()
    counts = {e.key: e.count for e in ka}
    summary: dict[str, Any] = {"label": label, "steps": steps, "wall_ms_per_step": 1000 * wall / max(steps, 1),
                               "file": path.name,
                               "per_step": {k: counts[k] / max(steps, 1) for k in SYNC_OPS if k in counts}}
    if cuda:
        try:  # kernel events (device-side rows); kernels on concurrent streams count separately
            events = prof.events()
            kernel_us = sum(e.device_time_total for e in events if e.device_type == DeviceType.CUDA) or \
                sum(e.device_time_total for e in events if e.device_type == DeviceType.CPU and e.cpu_parent is None)
            if not kernel_us:
                raise ValueError("the profile holds no kernel times")
            summary["gpu_kernel_ms_per_step"] = kernel_us / 1000 / max(steps, 1)
            summary["gpu_busy"] = summary["gpu_kernel_ms_per_step"] / summary["wall_ms_per_step"]
        except Exception as e:  # profiler internals differ between torch versions: report, do not fail the run
            summary["gpu_kernel_ms_per_step"] = None
            summary["gpu_kernel_note"] = f"{type(e).__name__}: {e}"
    sort = "cuda_time_total" if cuda else "self_cpu_time_total"
    lines = [f"{label}: torch.profiler over {steps} training steps, {summary['wall_ms_per_step']:.2f} ms per step "
             f"(wall)" + (f", GPU kernels {summary['gpu_kernel_ms_per_step']:.2f} ms per step"
                          if summary.get("gpu_kernel_ms_per_step") is not None else ""),
             "calls per step that read from or copy to the GPU (aten::_local_scalar_dense: a tensor read on the "
             "host, e.g. .item() or bool(), which waits for every queued kernel): " + (", ".join(f"{k} {v:.1f}" for k, v in summary["per_step"].items())
                                                      or "none recorded"),
             "", f"sorted by {sort}:", ka.table(sort_by=sort, row_limit=25)]
    if cuda:
        lines += ["", "sorted by self_cpu_time_total (host-side cost):", ka.table(sort_by="self_cpu_time_total",
                                                                                   row_limit=25)]
    path.write_text("\n".join(lines) + "\n")
    return summary


def _install(result: Path, profile: Path | None, profile_steps: str, label: str) -> None:
    """Measurement hooks of a child process: fastai callbacks for memory and the profiler, and the time spent
    writing checkpoints (part of ours' fit time, which stock does not have)."""
    from fastai.learner import defaults
    _record["result"] = str(result)
    if profile is not None:
        skip, active = (int(x) for x in profile_steps.split(","))
        _profile.update(path=str(profile), skip=skip, active=active, label=label)
    defaults.callbacks = [*defaults.callbacks, *_callbacks()]
    try:
        from ulmfit import checkpoint
    except ImportError:  # pragma: no cover - ulmfit is always importable from the repository root
        return
    save = checkpoint.RunCheckpoint.save

    @functools.wraps(save)
    def timed_save(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return save(self, *args, **kwargs)
        finally:
            _record["checkpoint_seconds"] += time.perf_counter() - t0
    checkpoint.RunCheckpoint.save = timed_save


def _write_record(extra: dict[str, Any] | None = None) -> None:
    out = {k: v for k, v in _record.items() if k != "result"}
    Path(_record["result"]).write_text(json.dumps({**out, **(extra or {})}))


def block_spacy() -> None:
    """Make ``import spacy`` fail in this process (ImportError), as on the GPU machine, which has no spaCy."""
    sys.modules["spacy"] = None  # type: ignore[assignment]
    _record["spacy_blocked"] = True


def child_stock(a: argparse.Namespace) -> None:
    from bench import lm_speed
    _install(a.result, a.profile, a.profile_steps, a.label)
    r = lm_speed.stock(a.data, a.bs, a.bptt, a.lr, a.drop_mult, a.clip, a.device, a.precision, a.model)
    _write_record({"stock": r})


def child_predict(a: argparse.Namespace) -> None:
    from bench import predict
    _record["result"] = str(a.result)
    _write_record({"predict": predict.from_tokens(a.data, a.docs, a.model, a.device)})


def export_sample(out: Path, cache: Path) -> dict[str, Any]:
    """``--smoke`` without ``--tokens``: ``stage=export_tokens`` (the stage's own ``run``) of the embedded samples
    into ``out``, named as ``experiments.gpu_payload`` names its files; their headers."""
    from ulmfit.config import compose
    from ulmfit.stages import export_tokens
    return {name: export_tokens.run(compose("stage=export_tokens", *data, f"stage.output={out / TOKEN_FILES[name]}",
                                            f"paths.cache={cache}", "tokenizer.n_workers=0"))
            for name, data in SAMPLE_EXPORTS.items()}


def child_ulmfit(a: argparse.Namespace) -> None:
    """``python -m ulmfit <overrides>`` in this process, with the measurement hooks."""
    _install(a.result, a.profile, a.profile_steps, a.label)
    sys.argv = ["ulmfit", *a.overrides]
    from ulmfit.__main__ import main as ulmfit_main
    try:
        ulmfit_main()
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    _write_record()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description="A child process of the GPU section.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("stock", "ulmfit", "predict"):
        p = sub.add_parser(name)
        p.add_argument("--result", type=Path, required=True, help="where the child writes what it measured (JSON)")
        p.add_argument("--profile", type=Path, default=None, help="write the profiler's tables here and stop")
        p.add_argument("--profile-steps", default="10,5", help="steps skipped, steps profiled")
        p.add_argument("--label", default=name, help="the run's name in the profile's header")
        if name == "stock":
            for opt, typ in (("--bs", int), ("--bptt", int), ("--lr", float), ("--drop-mult", float), ("--clip", float),
                             ("--device", str), ("--precision", str), ("--model", str)):
                p.add_argument(opt, type=typ, required=True)
        elif name == "predict":
            for opt, typ in (("--docs", int), ("--device", str), ("--model", str)):
                p.add_argument(opt, type=typ, required=True)
        p.add_argument("data" if name != "ulmfit" else "overrides", nargs="*",
                       help="python -m ulmfit's arguments" if name == "ulmfit" else "overrides that pick the corpus")
    p = sub.add_parser("export-sample", help="--smoke without --tokens: the samples as portable token files")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True)
    a = parser.parse_args()
    if a.cmd == "export-sample":  # the one child that tokenizes (with spaCy): never on the GPU path
        export_sample(a.out, a.cache)
        return
    block_spacy()  # the measuring children run as on the GPU machine
    {"stock": child_stock, "ulmfit": child_ulmfit, "predict": child_predict}[a.cmd](a)
