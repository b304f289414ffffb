"""Run every benchmark and write ``bench/results.md`` (and ``results.json``): ``python -m bench``.

    python -m bench                      # full run on ../shared/data (bench/README.md: how long it took)
    python -m bench --smoke --out DIR    # seconds-scale run on the embedded sample (what CI runs)
    python -m bench --only a,c           # a subset: a+b (LM speed, roofline), c, d, e
    python -m bench --only a --emulate-avx2   # this CPU capped to AVX2 (ulmfit.emulation), named so in the results
    python -m bench --gpu --tokens .gpu/corpora [--profile]   # only the GPU section (bench/gpu/) -> bench/gpu.md

Each figure is measured side by side in the same run, every training/measurement in a fresh process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench import gpu, lm_speed, memory, predict, tokenization
from bench.common import DEFAULT_DATA, REPO, SAMPLE

SECTIONS = ("a", "c", "d", "e")  # b is reported with a (same runs)


def versions() -> str:
    import fastai
    import spacy
    import torch
    return (f"Python {platform.python_version()}, torch {torch.__version__}, fastai {fastai.__version__}, "
            f"spaCy {spacy.__version__}, {torch.get_num_threads()} torch threads")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder with wikitext-2/ and imdb/ (default ../shared/data)")
    parser.add_argument("--tokens", type=Path, default=None,
                        help="(--gpu) folder with the portable token files wikitext2.tokens and imdb.tokens (python -m "
                             "experiments.gpu_payload --out .gpu writes .gpu/corpora); with --smoke, default: exported "
                             "from the embedded samples")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the embedded sample (CI)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections among a,c,d,e")
    parser.add_argument("--out", type=Path, default=REPO / "bench",
                        help="folder for results.md and results.json (with --gpu: gpu.md, gpu.json, gpu_profile_*.txt)")
    parser.add_argument("--lm-steps", type=int, default=200, help="training steps per side in (a)")
    parser.add_argument("--gpu", action="store_true",
                        help="only the GPU section: ours vs stock fastai on CUDA -> gpu.md and gpu.json in --out")
    parser.add_argument("--profile", action="store_true", help="(--gpu) torch.profiler tables of a few steps of each side")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help=f"(--gpu) start optional runs only while they fit (default {gpu.BUDGET_MINUTES:g}; "
                             "none with --smoke)")
    parser.add_argument("--lm-tokens", type=int, default=None,
                        help=f"(--gpu) stage.lm_tokens of each LM run: WikiText-2 training tokens, a seeded subset "
                             f"of whole documents (default {gpu.LM_TOKENS:,}; 0: all)")
    parser.add_argument("--emulate-avx2", action="store_true",
                        help="run as a CPU with AVX2 only (no AVX-512, no bf16): MKL, ATen and oneDNN capped by "
                             "environment variables (ulmfit.emulation) in this process and every child; the "
                             "hardware line says EMULATED")
    a = parser.parse_args(argv)
    from ulmfit.emulation import AVX2_ENV, isa_caps
    if a.emulate_avx2 and isa_caps() != AVX2_ENV:  # the caps act at each library's first use: a fresh process
        args = sys.argv[1:] if argv is None else argv
        return subprocess.call([sys.executable, "-m", "bench", *args], cwd=REPO, env={**os.environ, **AVX2_ENV})
    if a.gpu:  # its own checks: a GPU first (it says so clearly before anything else), then the token files
        if a.data is not None:
            parser.error("--gpu reads portable token files, not raw data: pass --tokens DIR (python -m "
                         "experiments.gpu_payload --out .gpu writes .gpu/corpora)")
        return gpu.section(a.tokens, a.out, smoke=a.smoke, profile=a.profile, budget_minutes=a.budget_minutes,
                           lm_tokens=a.lm_tokens)
    if a.tokens is not None:
        parser.error("--tokens is for --gpu only; the other sections read raw data (--data)")
    data = a.data or (SAMPLE if a.smoke else DEFAULT_DATA)
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    if bad := sorted(set(only) - set(SECTIONS)):
        parser.error(f"unknown section(s) {bad}; choose among {','.join(SECTIONS)}")
    for sub in ("wikitext-2", "imdb"):
        if not (data / sub).is_dir():
            parser.error(f"{data / sub} does not exist; pass --data <folder with wikitext-2/ and imdb/> "
                         f"(or --smoke for the embedded sample)")

    from ulmfit.report import hardware
    started, t0 = dt.datetime.now(), time.perf_counter()
    results: dict = {}
    lines: list[str] = []
    if "a" in only:
        results["lm_speed"] = lm_speed.run(data / "wikitext-2", steps=5 if a.smoke else a.lm_steps, smoke=a.smoke)
        lines += lm_speed.report(results["lm_speed"]) + [""]
    if "c" in only:
        results["tokenization"] = tokenization.run(data / "imdb", limit=300 if a.smoke else None)
        lines += tokenization.report(results["tokenization"]) + [""]
    if "d" in only:
        results["memory"] = memory.run(data / "wikitext-2", target_tokens=500_000 if a.smoke else 100_000_000,
                                       fastai_batches=50 if a.smoke else 2000)
        lines += memory.report(results["memory"]) + [""]
    if "e" in only:
        results["predict"] = predict.run(data / "imdb", n_docs=50 if a.smoke else 2000)
        lines += predict.report(results["predict"]) + [""]
    minutes = (time.perf_counter() - t0) / 60
    header = [
        "# Benchmarks" + (" (smoke run: tiny sizes, figures not meaningful)" if a.smoke else ""),
        "",
        f"Generated by `python -m bench{' --smoke' if a.smoke else ''}{' --emulate-avx2' if a.emulate_avx2 else ''}` on {started:%Y-%m-%d %H:%M}, "
        f"{minutes:.1f} min in all.  ",
        f"Hardware: {hardware()}.  ",
        f"Software: {versions()}.  ",
        f"Data: `{data}`.",
        "",
    ]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.md").write_text("\n".join(header + lines))
    (a.out / "results.json").write_text(json.dumps({"date": f"{started:%Y-%m-%d %H:%M}", "minutes": minutes,
                                                    "hardware": hardware(), "smoke": a.smoke, **results}, indent=1))
    print("\n".join(header + lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
