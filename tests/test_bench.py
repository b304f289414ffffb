"""The benchmark commands run end to end (tiny sizes on the embedded sample) from the repository root, as
``python -m bench`` / ``python -m bench.allocator`` with no PYTHONPATH set-up, and report every section."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from ulmfit.precision import cpu_runs_bf16

REPO = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the packages are found from the repository root


def test_bench_smoke_writes_every_section(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=900, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "results.md").read_text()
    for title in ("(a) LM training speed", "(b) matmul roofline", "(c) Tokenization", "(d) Peak RSS", "(e) Prediction"):
        assert title in md
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["smoke"] and "Hardware" in md and r["hardware"]
    lm = r["lm_speed"]
    # bf16 runs where the device has it (not on a CPU without AVX-512), and the report says why it is missing
    assert lm["sides"] == ["stock", "fp32"] + (["bf16"] if cpu_runs_bf16() else [])
    assert ("bf16" in lm["sides"]) != ("No bf16 row" in md)
    for side in lm["sides"]:  # the trainings saw the same tokens and ended finite
        assert lm[side]["train_tokens"] == lm["stock"]["train_tokens"]
        assert math.isfinite(lm[side]["valid_loss"]) and lm[side]["tokens_per_second"] > 0
    assert 0 < lm["fp32"]["roofline_fraction"]
    assert r["tokenization"]["mismatched_docs"] == 0 and r["tokenization"]["docs"] > 0
    mem = r["memory"]
    assert mem["ours"]["batches"] == mem["ours"]["of_batches"]  # a whole epoch streamed
    assert mem["ours"]["tokens"] >= 500_000
    assert r["predict"]["docs"] == 50 and r["predict"]["docs_per_second"] > 0


def test_bench_rejects_a_missing_data_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert not (tmp_path / "results.md").exists()


def test_allocator_bench_smoke(tmp_path):
    """bench.allocator on the embedded sample, glibc only (CI has no jemalloc): a table with a measured row."""
    proc = subprocess.run([sys.executable, "-m", "bench.allocator", "--steps", "10", "--allocators", "glibc",
                           "--data", str(REPO / "ulmfit" / "sample_data"), "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    r = json.loads((tmp_path / "allocator.json").read_text())
    (side,) = r["sides"]
    assert side["allocator"] == side["recorded_malloc"] == "glibc"
    assert side["rss_peak_mb"] > 100 and side["tokens_per_second"] > 0 and side["steps"] >= 1
    assert "| glibc | glibc |" in (tmp_path / "allocator.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "bench.allocator", "--allocators", "glibc,hoard"], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown allocator(s) ['hoard']" in bad.stderr
