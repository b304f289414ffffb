"""What ``--emulate-avx2`` changes on this CPU (``ulmfit.emulation``): the kernels torch dispatches to, whether it
sees bf16, and the fp32 GEMM speed at the matmul shapes of section (a), with and without the caps.

    python -m bench.emulation                  # -> bench/emulation.md, emulation.json
    python -m bench.emulation --rounds 3 --out DIR

Each side is a fresh process (the caps act at each library's first use), the two alternate ``--rounds`` times,
and each shape keeps its best time over every call of its side: on shared cores the best is the figure least
changed by the other processes. One torch thread, as the quickstart on one core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, emit, run_json
from bench.lm_speed import matmul_shapes, model_dims

VOCAB = 16_104  # section (a)'s WikiText-2 vocabulary (bench/results.md)


def child(reps: int) -> dict[str, Any]:
    """This process's capability, precision=auto and the best seconds per (a)-shape forward matmul."""
    import torch
    from ulmfit.hardware import resolve_precision
    torch.set_num_threads(1)
    best = {}
    for m, k, n, _ in matmul_shapes(model_dims(), VOCAB, 64, 70):
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.matmul(a, b)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.matmul(a, b)
            times.append(time.perf_counter() - t0)
        best[f"{m}x{k}x{n}"] = min(times)
    return {"capability": torch.backends.cpu.get_cpu_capability(),
            "precision_auto": resolve_precision("auto", torch.device("cpu")), "best_seconds": best}


def run(rounds: int, reps: int) -> dict[str, Any]:
    from ulmfit.emulation import AVX2_ENV, isa_caps
    if isa_caps():
        raise SystemExit(f"unset {', '.join(isa_caps())} first: the native side must run without ISA caps")
    sides: dict[str, list[dict[str, Any]]] = {"native": [], "avx2": []}
    for _ in range(rounds):
        for side, env in (("native", None), ("avx2", AVX2_ENV)):
            sides[side].append(run_json("bench.emulation", "child", "--reps", str(reps), env=env))
    shapes = {(m, k, n): count for m, k, n, count in matmul_shapes(model_dims(), VOCAB, 64, 70)}
    result: dict[str, Any] = {"rounds": rounds, "reps": reps, "shapes": {}}
    for side, runs in sides.items():
        result[side] = {"capability": sorted({r["capability"] for r in runs}),
                        "precision_auto": sorted({r["precision_auto"] for r in runs})}
    step_s = {"native": 0.0, "avx2": 0.0}
    for (m, k, n), count in shapes.items():
        key, flop = f"{m}x{k}x{n}", 2 * m * k * n
        row = {side: flop / min(r["best_seconds"][key] for r in runs) / 1e9 for side, runs in sides.items()}
        result["shapes"][key] = {"count_per_step": count, **{f"{s}_gflops": v for s, v in row.items()}}
        for side in step_s:
            step_s[side] += count * flop / (row[side] * 1e9)
    flops = sum(2 * m * k * n * c for (m, k, n), c in shapes.items())
    result["step"] = {f"{s}_gflops": flops / sec / 1e9 for s, sec in step_s.items()}
    return result


def report(r: dict[str, Any]) -> list[str]:
    rows = [f"| {key} | {v['count_per_step']} | {v['native_gflops']:.0f} | {v['avx2_gflops']:.0f} | "
            f"{v['avx2_gflops'] / v['native_gflops']:.2f} |" for key, v in r["shapes"].items()]
    s = r["step"]
    return [
        "| forward matmul (M×K×N) | per step | native GFLOP/s | AVX2-capped GFLOP/s | capped / native |",
        "|---|---|---|---|---|",
        *rows,
        f"| a step's forward matmuls, weighted | | {s['native_gflops']:.0f} | {s['avx2_gflops']:.0f} | "
        f"{s['avx2_gflops'] / s['native_gflops']:.2f} |",
        "",
        f"torch CPU capability: native {', '.join(r['native']['capability'])}, capped "
        f"{', '.join(r['avx2']['capability'])}; `train.precision=auto` resolves to native "
        f"{', '.join(r['native']['precision_auto'])}, capped {', '.join(r['avx2']['precision_auto'])}. "
        f"Best of {r['reps']} calls per shape over {r['rounds']} alternating rounds of fresh processes per side; "
        "one torch thread; `awd_lstm_cpu` at bs 64, bptt 70, vocabulary 16,104 (section (a)).",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emulation", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    c = sub.add_parser("child")
    c.add_argument("--reps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=10, help="timed calls per shape and process")
    parser.add_argument("--out", type=Path, default=REPO / "bench")
    a = parser.parse_args()
    if a.cmd == "child":
        emit(child(a.reps))
        return 0
    from ulmfit.report import hardware
    started, t0 = dt.datetime.now(), time.perf_counter()
    r = run(a.rounds, a.reps)
    r.update(date=f"{started:%Y-%m-%d %H:%M}", minutes=(time.perf_counter() - t0) / 60, hardware=hardware())
    lines = ["# What `--emulate-avx2` changes", "",
             f"Generated by `python -m bench.emulation --rounds {a.rounds} --reps {a.reps}` on {r['date']}, "
             f"{r['minutes']:.1f} min in all.  ", f"Hardware: {r['hardware']}.", "", *report(r), ""]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "emulation.md").write_text("\n".join(lines))
    (a.out / "emulation.json").write_text(json.dumps(r, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
