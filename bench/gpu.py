"""The GPU section of ``python -m bench``: ours vs stock fastai on one GPU -> ``bench/gpu.md`` and ``gpu.json``.

    python -m bench --gpu --tokens .gpu/corpora    # on a CUDA machine, about 5 minutes (--budget-minutes)
    python -m bench --gpu --tokens DIR --profile   # also torch.profiler tables of a few steps of each side
    python -m bench --gpu --smoke --out DIR        # the same code at tiny sizes, on the CPU where there is no GPU

It reads portable token files only (``ulmfit.data.portable``): ``wikitext2.tokens`` and ``imdb.tokens`` in the
``--tokens`` folder, which ``python -m experiments.gpu_payload --out .gpu`` writes to ``.gpu/corpora`` on a CPU
machine. Nothing is tokenized here: the GPU machine has no spaCy, and every measuring child process runs with
``import spacy`` made to fail, on the CPU too, so a run that would tokenize fails instead of measuring another path.
``--smoke`` without token files exports tiny ones from the embedded samples first (the one step that tokenizes, in
its own process) and then runs the same code.

Every LM run is a fresh process on the same WikiText-2 documents and vocabulary, paper-size AWD-LSTM
(``model=awd_lstm``, its dropouts times the same drop_mult), bptt 70, one epoch of one-cycle at the same LR, seed 0.
The documents are the seeded subset of whole training documents that ``stage.lm_tokens`` (``--lm-tokens``) picks,
the vocabulary pretrain's, built from the whole train part; validation on the whole valid part:

* stock: ``language_model_learner(dls, AWD_LSTM, config=..., pretrained=False)`` with ``.to_fp16()`` /
  ``.to_bf16()`` on fastai's ``LMDataLoader``, over tensors built by pretrain's own data calls
  (``bench.lm_speed.stock`` / ``lm_docs``);
* ours: ``python -m ulmfit stage=pretrain model=awd_lstm train.precision=... train.bs=...``, as a user runs it
  (``VARIANTS["ours"]``), and with device switches set back to their CPU values (``VARIANTS``, ``ATTRIBUTION``)
  so that the report shows which switch bought what.

Tokens/s = training tokens / wall seconds of the fit (training and its one validation pass; for ours the stage's
own ``train_seconds``, which includes the end-of-epoch checkpoint: its share is reported beside it). Peak GPU
memory is ``torch.cuda.max_memory_allocated`` during the fit, read by the process itself (a fastai callback that
this module adds to ``fastai.learner.defaults.callbacks`` in the child; ``ulmfit`` itself is run unchanged).
Then a classifier epoch (``stage=classify`` at paper size on ``data.n_train`` IMDB reviews) and prediction
throughput from token ids (``bench.predict.from_tokens``: ``stage=predict`` tokenizes raw text, which needs spaCy).

Runs that are not needed for the target (everything but stock and ours at each batch size and precision) are
started only while the running estimate says they fit in ``--budget-minutes``; stock and ours unless they would end
more than ``GRACE_SECONDS`` past it. Results are rewritten after every run, so an interrupted run (the GPU session
gives the section ``timeout 360``) leaves what it measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from experiments.common import entry_lineage, entry_metrics, run_module

# --------------------------------------------------------------------------------------------- what runs (edit here)
BATCH_SIZES = (64, 256)
PRECISIONS = ("fp16", "bf16")
MODEL = "awd_lstm"  # the paper's 400/1152/3
LR, DROP_MULT, CLIP, BPTT = 1e-2, 0.3, 0.4, 70  # as bench/lm_speed.py
TARGET_RATIO = 1.25     # ours / stock tokens/s, at ...
LOSS_TOLERANCE = 0.02   # ... a validation loss within ±2% of stock's
LM_TOKENS = 1_000_000   # stage.lm_tokens: WikiText-2 training tokens per LM run (of ~2.4M); the 8 stock/ours runs
                        # must leave the 5-minute budget room for classify, predict and some variants
BUDGET_MINUTES = 5.0    # the optional runs start only while the section fits (bench part of a GPU call: timeout 360)
GRACE_SECONDS = 45      # stock and ours start unless they would end this far past the budget (then: reported skipped)
TOKEN_FILES = {"wikitext2": "wikitext2.tokens", "imdb": "imdb.tokens"}  # in --tokens (experiments.gpu_payload)
# --smoke without --tokens: the same files exported from the embedded samples (data config overrides)
SAMPLE_EXPORTS = {"wikitext2": ("data=wikitext2_sample",), "imdb": ("data=imdb_sample", "data.parts=[train,test]")}

# The runs of ours at every batch size and precision: row name -> (what it shows, overrides beyond the common
# ones). "ours" is what a user gets (every device switch on auto) and the one the target applies to.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ours": ("what a user gets: every device switch on `auto`", ()),
    "ours, CPU-style": ("the CPU's settings on the GPU: the loss read every step, block-wise LM loss",
                        ("train.host_sync_every=1", "train.lm_loss=blockwise")),
}
# One switch at a time back to its CPU setting (the others on auto), at ATTRIBUTION_AT only: ours' tokens/s over
# such a run's is what that switch buys. The pinned, non-blocking batch copies have no switch, so no row.
ATTRIBUTION: dict[str, tuple[str, tuple[str, ...]]] = {
    "ours, host_sync_every=1": ("the loss read on the host every step", ("train.host_sync_every=1",)),
    "ours, lm_loss=blockwise": ("the block-wise LM loss (the CPU's)", ("train.lm_loss=blockwise",)),
}
ATTRIBUTION_AT = (256, "bf16")
PROFILE_AT = (256, "bf16")  # --profile: a few steps of stock and of ours at this batch size and precision


@dataclass(frozen=True)
class Sizes:
    """How big each part is: the GPU run's, or the smoke run's (seconds on a CPU, for CI)."""
    device: str                       # cuda | cpu
    model: str                        # a conf/model/ name
    batch_sizes: tuple[int, ...]
    precisions: tuple[str, ...]
    lm_tokens: int                    # stage.lm_tokens of each LM run (0: every WikiText-2 training document)
    clas_train: int                   # data.n_train: IMDB training reviews of the classifier epoch
    clas_valid: int                   # data.n_valid: of the held-out 10% of the training reviews
    clas_test: int                    # data.n_test: test reviews scored after the epoch
    clas_bs: int
    predict_docs: int                 # IMDB test reviews predicted from token ids
    profile_steps: tuple[int, int]    # (steps skipped, steps profiled)
    attribution: bool                 # run ATTRIBUTION
    timeout: int                      # seconds per process

    @classmethod
    def for_run(cls, smoke: bool, device: str, lm_tokens: int | None = None) -> "Sizes":
        if smoke:  # CUDA smoke keeps the GPU precisions, so a GPU machine can check the code path in seconds
            return cls(device, "awd_lstm_tiny", (16,), PRECISIONS if device == "cuda" else ("fp32",),
                       16 * BPTT * 6 if lm_tokens is None else lm_tokens, 90, 10, 40, 16, 30, (1, 2), False, 300)
        return cls(device, MODEL, BATCH_SIZES, PRECISIONS, LM_TOKENS if lm_tokens is None else lm_tokens,
                   3600, 400, 1000, 64, 2000, (10, 5), True, 600)


@dataclass
class Job:
    kind: str                          # stock | ours | classify | predict | profile-stock | profile-ours
    name: str                          # the row's name
    bs: int | None = None
    precision: str | None = None
    overrides: tuple[str, ...] = ()
    required: bool = False             # run even past the budget (stock and ours: the target's runs)
    options: tuple[str, ...] = field(default=())  # config keys the overrides need

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}/{self.bs}/{self.precision}"


def plan(s: Sizes, profile: bool) -> list[Job]:
    """Every run, in the order they start: the target's runs first, the optional ones after."""
    configs = [(bs, p) for bs in s.batch_sizes for p in s.precisions]
    jobs: list[Job] = []
    for i, (bs, p) in enumerate(configs):  # which side goes first alternates: no side always meets a cold GPU
        pair = [Job("stock", "stock fastai", bs, p, required=True), Job("ours", "ours", bs, p, required=True)]
        jobs += pair[::-1] if i % 2 else pair
    jobs += [Job("classify", "classify", None, None), Job("predict", "predict", None, None)]
    for name, (_, overrides) in VARIANTS.items():
        if name != "ours":
            jobs += [Job("ours", name, bs, p, overrides) for bs, p in configs]
    if s.attribution:
        bs, p = ATTRIBUTION_AT if ATTRIBUTION_AT in configs else configs[-1]
        jobs += [Job("ours", name, bs, p, overrides) for name, (_, overrides) in ATTRIBUTION.items()]
    if profile:
        bs, p = PROFILE_AT if PROFILE_AT in configs else configs[-1]
        jobs += [Job("profile-stock", "stock fastai", bs, p), Job("profile-ours", "ours", bs, p)]
    for j in jobs:
        j.options = tuple(o.split("=", 1)[0] for o in j.overrides)
    return jobs


def missing_options(keys: set[str]) -> set[str]:
    """The config keys (``train.lm_loss``, ...) this checkout's composed pretrain config lacks: a variant that
    sets one is skipped with that reason instead of failing on Hydra's unknown-key error."""
    if not keys:
        return set()
    from omegaconf import OmegaConf

    from bench.predict import compose_config
    cfg = compose_config("stage=pretrain")
    sentinel = object()
    return {k for k in keys if OmegaConf.select(cfg, k, default=sentinel) is sentinel}


# --------------------------------------------------------------------------------------------- child processes
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


# --------------------------------------------------------------------------------------------- the parent
@dataclass
class Context:
    sizes: Sizes
    work: Path
    out: Path
    wikitext: Path   # wikitext2.tokens
    imdb: Path       # imdb.tokens
    cache: Path      # the children's token cache: the first run unpacks each file, the others hit it


def lm_data(ctx: Context) -> list[str]:
    """The overrides that pick the LM runs' documents, the same on both sides (``bench.lm_speed.lm_docs``)."""
    return ["data=wikitext2", f"data.tokens={ctx.wikitext}", f"stage.lm_tokens={ctx.sizes.lm_tokens or 'null'}",
            "seed=0", f"paths.cache={ctx.cache}"]


def imdb_data(ctx: Context) -> list[str]:
    return ["data=imdb", f"data.tokens={ctx.imdb}", "data.parts=[train,test]", f"paths.cache={ctx.cache}"]


def common_overrides(ctx: Context, bs: int, precision: str) -> list[str]:
    s = ctx.sizes
    return ["stage=pretrain", *lm_data(ctx), f"model={s.model}", "train.epochs=1", f"train.lr={LR}",
            f"train.drop_mult={DROP_MULT}", f"train.bs={bs}", f"train.bptt={BPTT}", f"train.eval_bs={bs}",
            "train.schedule=one_cycle", f"train.clip={CLIP}", f"train.precision={precision}",
            f"train.device={s.device}"]


def _child(ctx: Context, job: Job, job_id: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``python -m bench.gpu <stock|ulmfit> ...`` in a fresh process; what it measured. A profile job writes its
    tables to ``gpu_profile_<stock|ours>.txt`` beside the results."""
    result = ctx.work / f"{job_id}.json"
    side = job.kind.removeprefix("profile-")
    prof = ["--profile", str(ctx.out / f"gpu_profile_{side}.txt"),
            "--profile-steps", ",".join(map(str, ctx.sizes.profile_steps))] if job.kind.startswith("profile") else []
    label = f"{job.name}, bs {job.bs}, {job.precision}" if job.bs else job.name
    run_module("bench.gpu", args[0], "--result", str(result), "--label", label, *prof, *args[1:], env=env,
               timeout=ctx.sizes.timeout)
    return json.loads(result.read_text())


def run_stock(ctx: Context, job: Job, job_id: str) -> dict[str, Any]:
    s = ctx.sizes
    rec = _child(ctx, job, job_id, ["stock", "--bs", str(job.bs), "--bptt", str(BPTT), "--lr", str(LR),
                                    "--drop-mult", str(DROP_MULT), "--clip", str(CLIP), "--device", s.device,
                                    "--precision", job.precision, "--model", s.model, "--", *lm_data(ctx)])
    if "stock" not in rec:
        return {"profile": rec.get("profile")}
    st = rec["stock"]
    return {"tokens_per_second": st["tokens_per_second"], "seconds": st["seconds"], "valid_loss": st["valid_loss"],
            "train_tokens": st["train_tokens"], "steps": st["steps"], "vocab_size": st["vocab_size"],
            "peak_gpu_mb": rec["peak_gpu_mb"], "peak_gpu_reserved_mb": rec.get("peak_gpu_reserved_mb"),
            "checkpoint_seconds": 0.0, "spacy_blocked": rec.get("spacy_blocked", False)}


def _ran_as(lineage: dict[str, Any]) -> dict[str, Any]:
    """What the run's lineage says its auto options ran as (precision, host_sync_every, lm_loss, ...)."""
    return {k: v for k, v in lineage.items()
            if isinstance(v, (str, int, float, bool)) and k not in ("stage", "name", "created")}


def run_ours(ctx: Context, job: Job, job_id: str) -> dict[str, Any]:
    home = ctx.work / job_id
    overrides = [*common_overrides(ctx, job.bs, job.precision), *job.overrides, "run_name=bench"]
    rec = _child(ctx, job, job_id, ["ulmfit", "--", *overrides], env={"ULMFIT_HOME": str(home), "PYTHONUNBUFFERED": "1"})
    if job.kind.startswith("profile"):
        return {"profile": rec.get("profile")}
    m, lineage = entry_metrics(home, "pretrain", "bench"), entry_lineage(home, "pretrain", "bench")
    return {"tokens_per_second": m["tokens_per_second"], "seconds": m["train_seconds"], "valid_loss": m["valid_loss"],
            "train_tokens": m["train_tokens"], "vocab_size": m["vocab_size"], "peak_gpu_mb": rec["peak_gpu_mb"],
            "peak_gpu_reserved_mb": rec.get("peak_gpu_reserved_mb"),
            # the whole process's peak up to the entry (test pass included), where the stage records it
            "entry_peak_gpu_mb": (lineage.get("environment") or {}).get("peak_gpu_mb"),
            "checkpoint_seconds": rec["checkpoint_seconds"], "overrides": list(job.overrides),
            "ran_as": _ran_as(lineage), "spacy_blocked": rec.get("spacy_blocked", False)}


def run_classify(ctx: Context, job: Job, job_id: str) -> dict[str, Any]:
    s = ctx.sizes
    home = ctx.work / job_id
    precision = "auto" if s.device == "cuda" else "fp32"  # auto: what a user gets (bf16 on a bf16 GPU)
    rec = _child(ctx, job, job_id, ["ulmfit", "--", "stage=classify", *imdb_data(ctx), f"data.n_train={s.clas_train}",
                                    f"data.n_valid={s.clas_valid}", f"data.n_test={s.clas_test}",
                                    "stage.parent_stage=none", f"model={s.model}", "train.gradual_unfreezing=false",
                                    "train.epochs=1", f"train.bs={s.clas_bs}", f"train.eval_bs={s.clas_bs}",
                                    f"train.precision={precision}", f"train.device={s.device}", "seed=0",
                                    "run_name=bench"],
                 env={"ULMFIT_HOME": str(home), "PYTHONUNBUFFERED": "1"})
    m = entry_metrics(home, "classify", "bench")
    return {"docs": m["n_train"], "valid_docs": m["n_valid"], "test_docs": m["n_test"], "seconds": m["train_seconds"],
            "docs_per_second": m["n_train"] / m["train_seconds"], "bs": s.clas_bs, "model": s.model,
            "peak_gpu_mb": rec["peak_gpu_mb"], "checkpoint_seconds": rec["checkpoint_seconds"],
            "ran_as": _ran_as(entry_lineage(home, "classify", "bench")),
            "spacy_blocked": rec.get("spacy_blocked", False)}


def run_predict(ctx: Context, job: Job, job_id: str) -> dict[str, Any]:
    s = ctx.sizes
    rec = _child(ctx, job, job_id, ["predict", "--docs", str(s.predict_docs), "--model", s.model, "--device", s.device,
                                    "--", *imdb_data(ctx)], env={"PYTHONUNBUFFERED": "1"})
    return {**rec["predict"], "spacy_blocked": rec.get("spacy_blocked", False)}


def compare(lm: list[dict[str, Any]]) -> None:
    """Each non-stock row against stock at the same batch size and precision: ratio, loss, target."""
    stock = {(r["bs"], r["precision"]): r for r in lm if r["name"] == "stock fastai" and "tokens_per_second" in r}
    for r in lm:
        ref = stock.get((r["bs"], r["precision"]))
        if r["name"] == "stock fastai" or ref is None or "tokens_per_second" not in r:
            continue
        r["vs_stock"] = r["tokens_per_second"] / ref["tokens_per_second"]
        r["loss_vs_stock"] = r["valid_loss"] / ref["valid_loss"] - 1
        r["equal_loss"] = abs(r["loss_vs_stock"]) <= LOSS_TOLERANCE and math.isfinite(r["valid_loss"])
        r["same_tokens"] = r["train_tokens"] == ref["train_tokens"]
        r["target_met"] = bool(r["vs_stock"] >= TARGET_RATIO and r["equal_loss"] and r["same_tokens"])


def device_info(device: str) -> dict[str, Any]:
    import fastai
    import torch
    d: dict[str, Any] = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
                         "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                         "fastai": fastai.__version__, "python": platform.python_version()}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        d.update(name=torch.cuda.get_device_name(0), capability=f"{p.major}.{p.minor}",
                 memory_gib=round(p.total_memory / 2**30, 1), multiprocessors=p.multi_processor_count)
    else:
        d["name"] = "no GPU (CPU smoke run)"
    return d


class Budget:
    """The running estimate: each pending run is assumed to take as long as the finished runs most like it."""

    def __init__(self, minutes: float | None):
        self.limit = None if minutes is None else minutes * 60
        self.t0 = time.perf_counter()
        self.done: list[tuple[Job, float]] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def estimate(self, job: Job) -> float:
        for same in (lambda j: j.kind == job.kind and j.bs == job.bs, lambda j: j.bs == job.bs and j.bs is not None,
                     lambda j: j.kind == job.kind, lambda j: True):
            times = [t for j, t in self.done if same(j)]
            if times:
                return sum(times) / len(times)
        return 0.0

    def fits(self, job: Job) -> bool:
        """An optional run fits in the budget; a required one (stock, ours) unless it would end more than
        ``GRACE_SECONDS`` past it: skipped and reported, rather than cut off by the caller's time limit."""
        if self.limit is None:
            return True
        return self.elapsed() + self.estimate(job) <= self.limit + (GRACE_SECONDS if job.required else 0)


def token_files(tokens: Path | None, smoke: bool, work: Path, timeout: int) -> dict[str, Any] | str:
    """The portable files the section reads, with what their headers say; or why there are none. ``tokens``: the
    folder (``--tokens``); None with ``smoke``: exported from the embedded samples into ``work``."""
    from ulmfit.data.portable import read_header
    from ulmfit.errors import UsageError
    exported = smoke and tokens is None
    if exported:
        folder = work / "tokens"
        run_module("bench.gpu", "export-sample", "--out", str(folder), "--cache", str(work / "export-cache"),
                   timeout=timeout)
    elif tokens is None:
        return ("pass --tokens <folder with wikitext2.tokens and imdb.tokens> (python -m experiments.gpu_payload "
                "--out .gpu writes them to .gpu/corpora on a machine with spaCy and the raw data), or --smoke for "
                "the embedded samples")
    else:
        folder = Path(tokens).resolve()  # the children run from the repository root
    paths = {name: folder / file for name, file in TOKEN_FILES.items()}
    if lacking := [str(p) for p in paths.values() if not p.is_file()]:
        return (f"{', '.join(lacking)} not found: this section reads portable token files only (no spaCy on the "
                "GPU machine); python -m experiments.gpu_payload --out .gpu writes them to .gpu/corpora")
    try:
        headers = {name: read_header(p) for name, p in paths.items()}
    except UsageError as e:
        return str(e)
    return {"folder": str(folder), "exported_from_samples": exported,
            **{name: {"file": str(p), "fingerprint": headers[name]["fingerprint"],
                      "parts": {k: v["tokens"] for k, v in headers[name]["parts"].items()}}
               for name, p in paths.items()}}


def section(tokens: Path | None, out: Path, smoke: bool = False, profile: bool = False,
            budget_minutes: float | None = None, lm_tokens: int | None = None) -> int:
    """Run the GPU section on the portable token files in ``tokens`` (``TOKEN_FILES``; with ``smoke`` and no
    folder, exported from the embedded samples) and write gpu.md / gpu.json to ``out``; 0 when every run went
    through, 1 when a run failed, 2 without a GPU (outside ``smoke``) or without the token files."""
    import torch
    if not torch.cuda.is_available() and not smoke:
        print(f"python -m bench --gpu: no CUDA GPU is visible (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda or 'none'}): this section measures training on a GPU. Run it on a machine with "
              "one, or add --smoke for the same code at tiny sizes on the CPU.", file=sys.stderr)
        return 2
    device = "cuda" if torch.cuda.is_available() else "cpu"
    s = Sizes.for_run(smoke, device, lm_tokens)
    work = Path(tempfile.mkdtemp(prefix="ulmfit-bench-gpu-"))
    data = token_files(tokens, smoke, work, s.timeout)
    if isinstance(data, str):
        shutil.rmtree(work, ignore_errors=True)
        print(f"python -m bench --gpu: {data}", file=sys.stderr)
        return 2
    out = Path(out).resolve()  # the children run from the repository root and write profiles there
    budget = Budget(None if smoke and budget_minutes is None else budget_minutes or BUDGET_MINUTES)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(s, work, out, Path(data["wikitext2"]["file"]), Path(data["imdb"]["file"]), work / "cache")
    jobs = plan(s, profile)
    missing = missing_options({o for j in jobs for o in j.options})
    started = dt.datetime.now()
    r: dict[str, Any] = {"date": f"{started:%Y-%m-%d %H:%M}", "smoke": smoke, "gpu": device_info(device),
                         "data": data, "settings": {**asdict(s), "lr": LR, "drop_mult": DROP_MULT, "clip": CLIP,
                                                          "bptt": BPTT, "target_ratio": TARGET_RATIO,
                                                          "loss_tolerance": LOSS_TOLERANCE,
                                                          "budget_minutes": budget.limit and budget.limit / 60,
                                                          "profile": profile},
                         "variants": {k: {"what": w, "overrides": list(o)} for k, (w, o) in {**VARIANTS,
                                                                                              **ATTRIBUTION}.items()},
                         "lm": [], "classify": None, "predict": None, "profile": {}, "skipped": [], "failed": []}
    from ulmfit.report import hardware
    r["hardware"] = hardware()
    print(f"[bench --gpu] {len(jobs)} runs planned on {r['gpu']['name']}; budget "
          f"{'none' if budget.limit is None else f'{budget.limit / 60:.1f} min'} "
          f"(stock and ours run unless they would end over {GRACE_SECONDS} s past it)", flush=True)
    for i, job in enumerate(jobs):
        job_id = f"{i:02d}-{job.kind}"
        if lacking := sorted(set(job.options) & missing):
            r["skipped"].append({"run": job.key, "why": f"{', '.join(lacking)}: not an option of this checkout"})
            continue
        if not budget.fits(job):
            r["skipped"].append({"run": job.key, "why": f"over the {budget.limit / 60:.1f}-minute budget"
                                 + (f" by more than {GRACE_SECONDS} s" if job.required else "")
                                 + f" (estimated {budget.estimate(job):.0f} s at {budget.elapsed() / 60:.1f} min)"})
            continue
        t0 = time.perf_counter()
        try:
            if job.kind in ("stock", "profile-stock"):
                row = run_stock(ctx, job, job_id)
            elif job.kind in ("ours", "profile-ours"):
                row = run_ours(ctx, job, job_id)
            elif job.kind == "classify":
                row = run_classify(ctx, job, job_id)
            else:
                row = run_predict(ctx, job, job_id)
        except (SystemExit, subprocess.TimeoutExpired, Exception) as e:  # noqa: B014  one failed run, not the section
            msg = str(e.code) if isinstance(e, SystemExit) else f"{type(e).__name__}: {e}"
            r["failed"].append({"run": job.key, "required": job.required, "error": msg[-3000:]})
            print(f"[bench --gpu] FAILED {job.key}: {msg[-3000:]}", file=sys.stderr, flush=True)
            row = None
        seconds = time.perf_counter() - t0
        budget.done.append((job, seconds))
        if row is not None:
            row["process_seconds"] = seconds
            if job.kind in ("stock", "ours"):
                r["lm"].append({"name": job.name, "bs": job.bs, "precision": job.precision, **row})
            elif job.kind.startswith("profile"):
                r["profile"][job.name] = {"bs": job.bs, "precision": job.precision, **(row["profile"] or {})}
            else:
                r[job.kind] = row
        compare(r["lm"])
        r["minutes"] = budget.elapsed() / 60
        write(out, r)
        pending = [j for j in jobs[i + 1:] if not set(j.options) & missing]
        left = sum(budget.estimate(j) for j in pending)
        print(f"[bench --gpu] {i + 1}/{len(jobs)} {job.key}: {seconds:.0f} s; {budget.elapsed() / 60:.1f} min so far, "
              f"about {left / 60:.1f} min left if every pending run starts", flush=True)
    shutil.rmtree(work, ignore_errors=True)  # token cache, stores and checkpoints of the runs
    print("\n".join(report(r)))
    return 1 if r["failed"] else 0


# --------------------------------------------------------------------------------------------- report
def _mb(v: float | None) -> str:
    return "n/a (CPU)" if v is None else f"{v:,.0f} MiB"


def report(r: dict[str, Any]) -> list[str]:
    s, g = r["settings"], r["gpu"]
    lm = r["lm"]
    tokens = next((x["train_tokens"] for x in lm), None)
    vocab = next((x["vocab_size"] for x in lm), None)
    out = [
        "# GPU benchmark" + (" (smoke run: tiny sizes, figures not meaningful)" if r["smoke"] else ""),
        "",
        f"Generated by `python -m bench --gpu{' --smoke' if r['smoke'] else ''}"
        f"{' --profile' if s['profile'] else ''}` on {r['date']}, {r.get('minutes', 0):.1f} min in all"
        + (f" (budget {s['budget_minutes']:.1f} min for the optional runs)" if s["budget_minutes"] else "") + ".  ",
        f"GPU: **{g['name']}**" + (f" (compute capability {g['capability']}, {g['memory_gib']} GiB, "
                                   f"{g['multiprocessors']} SMs)" if "capability" in g else "") + ".  ",
        f"Software: torch {g['torch']} (CUDA {g['cuda'] or 'none'}, cuDNN {g['cudnn']}), fastai {g['fastai']}, "
        f"Python {g['python']}.  ",
        f"Host: {r['hardware']}.  ",
        data_line(r["data"]),
        "",
        "## LM training: ours vs stock fastai",
        "",
        f"AWD-LSTM `{s['model']}`" + (f" (vocab {vocab:,})" if vocab else "") + f", bptt {s['bptt']}, one epoch of "
        f"one-cycle (lr {s['lr']}, drop_mult {s['drop_mult']}, gradient clipping {s['clip']}, seed 0) on the same "
        + (f"{tokens:,} " if tokens else "") + "WikiText-2 training tokens (`stage.lm_tokens="
        + (f"{s['lm_tokens']}`: a seeded subset of whole documents" if s["lm_tokens"] else "null`: every document")
        + "; the vocabulary pretrain builds from the whole train part; validation on the whole valid part), "
        f"on `{s['device']}`; each run a fresh process. "
        "stock = `language_model_learner(...).to_fp16()`/`.to_bf16()` on fastai's `LMDataLoader`; ours = "
        "`python -m ulmfit stage=pretrain` with the overrides below. Tokens/s = training tokens / fit wall time "
        "(training + one validation pass; ours' includes its end-of-epoch checkpoint, column 'ckpt'). Target: "
        f"ours ≥ {s['target_ratio']}× stock's tokens/s with a validation loss within ±{100 * s['loss_tolerance']:.0f}%.",
        "",
        "| bs | precision | run | tokens/s | vs stock | valid loss (vs stock) | loss ±2% | peak GPU memory | fit | "
        "ckpt | process | ≥1.25× at equal loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in sorted(lm, key=lambda x: (x["bs"], x["precision"])):
        stock = x["name"] == "stock fastai"
        vs = "1.00×" if stock else (f"{x['vs_stock']:.2f}×" if "vs_stock" in x else "no stock run")
        loss = f"{x['valid_loss']:.4f}" + ("" if stock or "loss_vs_stock" not in x else
                                           f" ({100 * x['loss_vs_stock']:+.2f}%)")
        eq = "" if stock or "equal_loss" not in x else ("yes" if x["equal_loss"] else "**no**")
        verdict = "" if stock or "target_met" not in x else ("**PASS**" if x["target_met"] else "**FAIL**")
        ckpt = "—" if stock else f"{x['checkpoint_seconds']:.1f} s"  # stock fastai writes no checkpoint
        out.append(f"| {x['bs']} | {x['precision']} | {x['name']} | {x['tokens_per_second']:,.0f} | {vs} | {loss} | "
                   f"{eq} | {_mb(x['peak_gpu_mb'])} | {x['seconds']:.1f} s | {ckpt} | "
                   f"{x['process_seconds']:.0f} s | {verdict} |")
    ours = [x for x in lm if x["name"] == "ours" and "target_met" in x]
    n_cfg = len(s["batch_sizes"]) * len(s["precisions"])
    met = sum(x["target_met"] for x in ours)
    out += ["", f"**Target {'met' if ours and met == n_cfg else 'not met'}**: ours reached ≥ {s['target_ratio']}× "
                f"stock at equal loss in {met} of {n_cfg} batch-size/precision pairs"
                + (f" ({n_cfg - len(ours)} without a measurement)" if len(ours) < n_cfg else "") + "."]
    out += ["", "Runs of ours (overrides beyond the common ones; what the lineage says the auto options ran as):", ""]
    for name, v in r["variants"].items():
        ran = next((x.get("ran_as") for x in lm if x["name"] == name and x.get("ran_as")), None)
        if any(x["name"] == name for x in lm):
            out.append(f"- **{name}**: {v['what']}; `{' '.join(v['overrides']) or '(none)'}`"
                       + (f"; ran as {', '.join(f'{k}={w}' for k, w in ran.items() if k != 'parent')}" if ran else ""))
    out += attribution(lm)
    if c := r["classify"]:
        out += ["", "## Classifier and prediction", "",
                f"- `stage=classify` (`{c['model']}`, concat pooling, no parent LM, all layers trainable, "
                f"{c['ran_as'].get('precision', '?')}), one epoch on {c['docs']:,} IMDB reviews (`data.n_train`) at "
                f"bs {c['bs']} (+ validation on {c['valid_docs']:,}): **{c['docs_per_second']:,.1f} docs/s** "
                f"({c['seconds']:.1f} s, peak GPU memory {_mb(c['peak_gpu_mb'])}); then {c.get('test_docs', 0):,} test "
                "reviews scored (`data.n_test`, not timed)."]
    if p := r["predict"]:
        out += ([] if c else ["", "## Classifier and prediction", ""]) + [
            f"- prediction from token ids on {p['docs']:,} IMDB test reviews ({p['tokens']:,} tokens, bs {p['bs']}, "
            f"`{p['model']}` classifier, fp32, device {p['device']}): **{p['docs_per_second']:,.1f} docs/s** "
            f"({p['seconds']:.1f} s: loading the entry and `Classifier.predict_probs`, what `stage=predict` does after "
            "tokenizing). Not `stage=predict` itself: it reads raw text and tokenizes it with spaCy, which the GPU "
            "machine lacks, and a portable token file holds tokens, not the raw text; its CPU throughput with "
            "tokenization is section (e) of `python -m bench`."]
    if r["profile"]:
        out += ["", "## Where the time goes (torch.profiler)", ""]
        for name, pr in r["profile"].items():
            if not pr.get("steps"):
                out.append(f"- {name}: {pr.get('note', 'no profile')}")
                continue
            busy = (f", GPU kernels {pr['gpu_kernel_ms_per_step']:.2f} ms ({100 * pr['gpu_busy']:.0f}% busy)"
                    if pr.get("gpu_kernel_ms_per_step") else "")
            syncs = ", ".join(f"{k} {v:.1f}" for k, v in pr["per_step"].items()) or "none"
            out.append(f"- {name}, bs {pr['bs']}, {pr['precision']}: {pr['steps']} steps, "
                       f"{pr['wall_ms_per_step']:.2f} ms per step{busy}; host reads and copies per step: {syncs}. "
                       f"Top ops: [{pr['file']}]({pr['file']}).")
    if r["skipped"]:
        out += ["", "Skipped: " + "; ".join(f"`{x['run']}` ({x['why']})" for x in r["skipped"]) + "."]
    if r["failed"]:
        out += ["", "**Failed**:", *[f"- `{x['run']}`: {x['error'].strip().splitlines()[-1] if x['error'].strip() else ''}"
                                     for x in r["failed"]]]
    return out


def data_line(d: dict[str, Any] | str) -> str:
    if isinstance(d, str):  # a made-up report in the tests
        return f"Data: `{d}`."
    files = ", ".join(f"`{Path(d[k]['file']).name}` ({d[k]['fingerprint'][:8]}…, "
                      + ", ".join(f"{p} {n:,}" for p, n in d[k]["parts"].items()) + " tokens)" for k in TOKEN_FILES)
    return (f"Data: portable token files in `{d['folder']}`"
            + (" (exported from the embedded samples for this smoke run)" if d.get("exported_from_samples") else "")
            + f": {files}. Nothing is tokenized here; each measuring process runs with `import spacy` failing, as "
            "on a GPU machine without spaCy.")


def attribution(lm: list[dict[str, Any]]) -> list[str]:
    """ours over each variant at the same batch size and precision: what the switches it reverts bought."""
    ours = {(x["bs"], x["precision"]): x for x in lm if x["name"] == "ours"}
    rows = [f"| {x['bs']} | {x['precision']} | {x['name']} | {x['tokens_per_second']:,.0f} | "
            f"{ours[x['bs'], x['precision']]['tokens_per_second'] / x['tokens_per_second']:.2f}× |"
            for x in sorted(lm, key=lambda x: (x["bs"], x["precision"]))
            if x["name"] not in ("ours", "stock fastai") and (x["bs"], x["precision"]) in ours]
    if not rows:
        return []
    return ["", "What the device switches buy: ours' tokens/s over the run with the named switch(es) at the CPU "
                "setting (computed from the table above).", "",
            "| bs | precision | run | its tokens/s | ours / it |", "|---|---|---|---|---|", *rows]


def write(out: Path, r: dict[str, Any]) -> None:
    (out / "gpu.json").write_text(json.dumps(r, indent=1))
    (out / "gpu.md").write_text("\n".join(report(r)) + "\n")


# --------------------------------------------------------------------------------------------- child entry point
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


if __name__ == "__main__":
    main()
