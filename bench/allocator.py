"""(f) Resident memory of a CPU training run under glibc malloc vs jemalloc/tcmalloc (``ulmfit.allocator``).

    python -m bench.allocator                    # 200 steps per allocator on WikiText-2 (bench/README.md: timings)
    python -m bench.allocator --steps 20 --data ulmfit/sample_data --out /tmp/alloc   # a quick smoke run

Each side is the same ``python -m ulmfit stage=pretrain`` (``model=awd_lstm_cpu``, ``train.precision=auto``, bs 64,
bptt 70, seed 0) on the same WikiText-2 slice, in a fresh process whose ``LD_PRELOAD`` names the allocator
(none for glibc). This process samples the child's ``VmRSS`` every 0.2 s. Reported: RSS a quarter of the way into
training (past the first batches' warm-up), at the end of training, the growth per minute between them, the
peak, and the stage's own tokens/s and validation loss. Writes ``bench/allocator.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_DATA, REPO, wikitext_slice
from ulmfit.allocator import LIB_DIRS, REPLACEMENTS

TRAINING_STARTS = "train / "  # pretrain's log line "pretrain: N train / M valid tokens ..." comes right before fit
SAMPLE_EVERY_S = 0.2  # reading /proc is cheap; short (smoke) runs still get a curve


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def library(name: str) -> Path | None:
    """The shared library for ``name`` (jemalloc/tcmalloc) on this machine, None for glibc."""
    if name == "glibc":
        return None
    for path in (Path(d) / lib for lib in REPLACEMENTS if name in lib for d in LIB_DIRS):
        if path.is_file():
            return path
    raise SystemExit(f"no {name} library found (looked for {', '.join(l for l in REPLACEMENTS if name in l)}); "
                     f"install it (Debian/Ubuntu: apt-get install libjemalloc2 / libtcmalloc-minimal4) or drop it "
                     f"from --allocators")


def measure(allocator: str, root: Path, work: Path, bs: int, bptt: int) -> dict[str, Any]:
    """One fresh ``stage=pretrain`` under ``allocator``, its RSS sampled every second."""
    home, log = work / allocator, work / f"{allocator}.log"
    # ULMFIT_MALLOC=system: python -m ulmfit does not restart itself under another allocator (ulmfit.allocator)
    env = {**os.environ, "ULMFIT_HOME": str(home), "PYTHONUNBUFFERED": "1", "ULMFIT_MALLOC": "system"}
    env.pop("LD_PRELOAD", None)
    lib = library(allocator)
    if lib:
        env["LD_PRELOAD"] = str(lib)
    cmd = [sys.executable, "-m", "ulmfit", "stage=pretrain", "data=wikitext2", f"data.root={root}",
           "model=awd_lstm_cpu", "train.epochs=1", f"train.bs={bs}", f"train.bptt={bptt}", "train.precision=auto",
           "seed=0", f"paths.cache={work / 'cache'}", "run_name=bench", "logger=none"]
    print("$", f"LD_PRELOAD={lib}" if lib else "", " ".join(cmd), flush=True)
    samples: list[tuple[float, float]] = []  # (seconds since training started, MB)
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        started = None
        while proc.poll() is None:
            time.sleep(SAMPLE_EVERY_S)
            if started is None and TRAINING_STARTS in log.read_text():
                started = time.perf_counter()
            mb = rss_mb(proc.pid)
            if started is not None and mb is not None:
                samples.append((time.perf_counter() - started, mb))
    if proc.returncode != 0:
        sys.exit(f"{allocator}: the run failed (exit {proc.returncode}); see {log}:\n{log.read_text()[-2000:]}")
    if len(samples) < 3:
        sys.exit(f"{allocator}: training ended after {len(samples)} RSS samples ({SAMPLE_EVERY_S} s apart), too few "
                 f"to measure growth; raise --steps")
    m = json.loads((home / "store" / "pretrain" / "bench" / "metrics.json").read_text())
    train_s = m["train_seconds"]
    # Growth between a quarter of the way in (past the first batches' warm-up) and the end of training.
    in_training = [(t, mb) for t, mb in samples if train_s / 4 <= t <= train_s] or samples
    (t0, first), (t1, last) = in_training[0], in_training[-1]
    lineage = json.loads((home / "store" / "pretrain" / "bench" / "lineage.json").read_text())
    return {"allocator": allocator, "library": str(lib) if lib else None,
            "recorded_malloc": lineage["environment"].get("malloc"),
            "rss_start_mb": first, "rss_end_mb": last, "rss_peak_mb": max(mb for _, mb in samples),
            "growth_mb_per_min": (last - first) / max(t1 - t0, 1e-9) * 60,
            "train_seconds": train_s, "train_tokens": m["train_tokens"], "steps": -(-m["train_tokens"] // (bs * bptt)),
            "tokens_per_second": m["tokens_per_second"], "valid_loss": m["valid_loss"],
            "rss_curve": [(round(t, 1), round(mb)) for t, mb in samples[::5]]}


def report(r: dict[str, Any]) -> list[str]:
    rows = [f"| {s['allocator']} | {s['recorded_malloc']} | {s['rss_start_mb']:,.0f} MB | {s['rss_end_mb']:,.0f} MB | "
            f"{s['growth_mb_per_min']:+,.0f} MB/min | {s['rss_peak_mb']:,.0f} MB | {s['tokens_per_second']:,.0f} | "
            f"{s['valid_loss']:.4f} | {s['train_seconds']:.0f} s |" for s in r["sides"]]
    return [
        "# (f) Memory of a CPU training run: glibc malloc vs a replacement allocator",
        "",
        f"Generated by `python -m bench.allocator --steps {r['steps']}` on {r['date']}, {r['minutes']:.1f} min in all.  ",
        f"Hardware: {r['hardware']}.",
        "",
        f"`python -m ulmfit stage=pretrain model=awd_lstm_cpu train.precision=auto train.epochs=1` (bs {r['bs']}, "
        f"bptt {r['bptt']}, seed 0) on the same WikiText-2 slice ({r['sides'][0]['train_tokens']:,} training tokens, "
        f"{r['sides'][0]['steps']} steps), each in a fresh process; RSS sampled every 0.2 s from outside. "
        "'recorded' = the `malloc` the entry's `lineage.json` records.",
        "",
        "| allocator | recorded | RSS at ¼ of training | RSS at end | growth | peak | tokens/s | valid loss | "
        "training time |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with wikitext-2/")
    ap.add_argument("--steps", type=int, default=200, help="training steps per allocator")
    ap.add_argument("--allocators", default="glibc,jemalloc", help="comma-separated: glibc, jemalloc, tcmalloc")
    ap.add_argument("--out", type=Path, default=REPO / "bench")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.allocators.split(",") if n.strip()]
    if bad := sorted(set(names) - {"glibc", "jemalloc", "tcmalloc"}):
        ap.error(f"unknown allocator(s) {bad}; choose among glibc, jemalloc, tcmalloc")
    for name in names:
        library(name)  # a missing library stops here, before any training
    if not (a.data / "wikitext-2").is_dir():
        ap.error(f"{a.data / 'wikitext-2'} does not exist; pass --data <folder with wikitext-2/>")
    bs, bptt = 64, 70
    from ulmfit.report import hardware
    started, t0 = dt.datetime.now(), time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ulmfit-bench-alloc-"))
    lines_per_step = bs * bptt / 65  # WikiText-2 averages ~65 fastai tokens per line
    root = wikitext_slice(a.data / "wikitext-2", work / "data",
                          {"train": int(a.steps * lines_per_step) + 1, "valid": 300, "test": 20})
    sides = [measure(name, root, work, bs, bptt) for name in names]
    r = {"date": f"{started:%Y-%m-%d %H:%M}", "minutes": (time.perf_counter() - t0) / 60, "hardware": hardware(),
         "steps": a.steps, "bs": bs, "bptt": bptt, "sides": sides}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "allocator.json").write_text(json.dumps(r, indent=1))
    (a.out / "allocator.md").write_text("\n".join(report(r)))
    print("\n".join(report(r)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
