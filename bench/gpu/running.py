"""Running the GPU section: the token files, each planned run in a fresh child process (``bench.gpu.child``), what
it measured read back (its result file, the store entry it wrote), and the results rewritten after every run."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import entry
from bench.gpu.planning import (ATTRIBUTION, BPTT, BUDGET_MINUTES, CLIP, DROP_MULT, GRACE_SECONDS, LOSS_TOLERANCE, LR,
                                TARGET_RATIO, TOKEN_FILES, VARIANTS, Budget, Job, Sizes, missing_options, plan)
from bench.gpu.reporting import compare, report, write
from ulmfit.processes import run_module

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


def ulmfit_env(home: Path) -> dict[str, str]:
    """The environment of a child that runs ``python -m ulmfit`` in its own process (``child.child_ulmfit``), with
    ULMFIT_HOME ``home``: the allocator ``python -m ulmfit`` would restart itself under (``ulmfit.allocator``) is
    preloaded here, as a user's run gets it, because a restart in the child would lose the measurement hooks."""
    from ulmfit.allocator import preload_env
    return preload_env({**os.environ, "ULMFIT_HOME": str(home), "PYTHONUNBUFFERED": "1"})


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
    rec = _child(ctx, job, job_id, ["ulmfit", "--", *overrides], env=ulmfit_env(home))
    if job.kind.startswith("profile"):
        return {"profile": rec.get("profile")}
    written = entry(home, "pretrain", "bench")
    m, lineage = written.metrics, written.lineage
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
                 env=ulmfit_env(home))
    written = entry(home, "classify", "bench")
    m = written.metrics
    return {"docs": m["n_train"], "valid_docs": m["n_valid"], "test_docs": m["n_test"], "seconds": m["train_seconds"],
            "docs_per_second": m["n_train"] / m["train_seconds"], "bs": s.clas_bs, "model": s.model,
            "peak_gpu_mb": rec["peak_gpu_mb"], "checkpoint_seconds": rec["checkpoint_seconds"],
            "ran_as": _ran_as(written.lineage),
            "spacy_blocked": rec.get("spacy_blocked", False)}


def run_predict(ctx: Context, job: Job, job_id: str) -> dict[str, Any]:
    s = ctx.sizes
    rec = _child(ctx, job, job_id, ["predict", "--docs", str(s.predict_docs), "--model", s.model, "--device", s.device,
                                    "--", *imdb_data(ctx)], env={"PYTHONUNBUFFERED": "1"})
    return {**rec["predict"], "spacy_blocked": rec.get("spacy_blocked", False)}


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
