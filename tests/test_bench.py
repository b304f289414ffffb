"""The benchmark commands run end to end (tiny sizes on the embedded sample) from the repository root, as
``python -m bench`` / ``python -m bench.allocator`` with no PYTHONPATH set-up, and report every section."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ulmfit.hardware import cpu_runs_bf16

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


# Refusals are checked in this process: the same main() as `python -m bench`, without a fresh interpreter's
# imports (several seconds each on a shared CPU); the smoke runs above and below run it as a user does.
def test_bench_rejects_a_missing_data_folder(tmp_path, capsys):
    from bench.__main__ import main
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "does not exist" in capsys.readouterr().err
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


# --------------------------------------------------------------------------------------------- GPU section
# ``python -m bench`` with ``import spacy`` failing, as on the GPU machine (tests/test_portable.py blocks it alike)
NO_SPACY_BENCH = "import sys; sys.modules['spacy'] = None; from bench.__main__ import main; sys.exit(main(sys.argv[1:]))"


def test_gpu_section_smoke_on_cpu(tmp_path):
    """``python -m bench --gpu --smoke --profile``: the GPU section's code at tiny sizes (here on the CPU: fp32 on
    both sides, no GPU memory) on the route a GPU machine takes: portable token files (exported from the embedded
    samples first, in a process of their own), read by children and a parent that cannot import spaCy. Measured rows
    beside stock on the same documents and vocabulary, the equal-loss and pass/fail columns, classifier and
    prediction throughput, and a profile of each side."""
    import torch
    proc = subprocess.run([sys.executable, "-c", NO_SPACY_BENCH, "--gpu", "--smoke", "--profile", "--out",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((tmp_path / "gpu.json").read_text())
    md = (tmp_path / "gpu.md").read_text()
    assert r["smoke"] and not r["failed"] and not r["skipped"] and "smoke run" in md
    cuda = torch.cuda.is_available()
    assert r["gpu"]["device"] == ("cuda" if cuda else "cpu") and r["gpu"]["name"] in md
    data = r["data"]
    assert data["exported_from_samples"] and "portable token files" in md and "`import spacy` failing" in md
    assert set(data["wikitext2"]["parts"]) == {"train", "valid", "test"} and set(data["imdb"]["parts"]) == {"train",
                                                                                                          "test"}
    lm = {(x["name"], x["bs"], x["precision"]): x for x in r["lm"]}
    for prec in r["settings"]["precisions"]:
        stock, ours = lm["stock fastai", 16, prec], lm["ours", 16, prec]
        for x in (stock, ours):
            assert x["tokens_per_second"] > 0 and math.isfinite(x["valid_loss"]) and x["seconds"] > 0
            assert (x["peak_gpu_mb"] is not None) == cuda
        # stage.lm_tokens: a subset of whole documents (at least the budget, less than the file's train part)
        assert r["settings"]["lm_tokens"] <= ours["train_tokens"] < data["wikitext2"]["parts"]["train"]
        assert ours["train_tokens"] == stock["train_tokens"] and ours["vocab_size"] == stock["vocab_size"]
        assert ours["vs_stock"] > 0 and isinstance(ours["target_met"], bool) and isinstance(ours["equal_loss"], bool)
        assert ours["ran_as"]["precision"] == prec
    assert "| ≥1.25× at equal loss |" in md and ("**PASS**" in md or "**FAIL**" in md) and "Target " in md
    if not cuda:
        assert "n/a (CPU)" in md
    cpu_style = [x for x in r["lm"] if x["name"] == "ours, CPU-style"]
    assert cpu_style and cpu_style[0]["ran_as"]["lm_loss"] == "blockwise" and cpu_style[0]["ran_as"]["host_sync_every"] == 1
    c, p = r["classify"], r["predict"]
    # data.n_train=90 is the label budget, its validation included (data.valid_frac of it, at most data.n_valid=10)
    assert (c["docs"] + c["valid_docs"], c["test_docs"]) == (90, 40) and 0 < c["valid_docs"] <= 10
    assert c["docs_per_second"] > 0
    assert p["docs"] == 30 and p["from"] == "token ids" and p["docs_per_second"] > 0 and p["tokens"] > 0
    assert all(x["spacy_blocked"] for x in [*r["lm"], c, p])  # every measuring child ran without spaCy
    for side in ("stock fastai", "ours"):
        prof = r["profile"][side]
        assert prof["steps"] == 2 and prof["wall_ms_per_step"] > 0
        table = (tmp_path / prof["file"]).read_text()
        assert "sorted by" in table and "Self CPU" in table
    assert {p.name for p in tmp_path.iterdir()} == {"gpu.md", "gpu.json", "gpu_profile_stock.txt", "gpu_profile_ours.txt"}


def test_gpu_token_files_are_checked_first(tmp_path):
    """Without a usable --tokens folder the section says what to do (no raw-data fallback, nothing tokenized)."""
    from bench import gpu
    need = gpu.token_files(None, False, tmp_path, 10)
    assert isinstance(need, str) and "--tokens" in need and "experiments.gpu_payload" in need
    missing = gpu.token_files(tmp_path, False, tmp_path, 10)
    assert isinstance(missing, str) and "wikitext2.tokens" in missing and "imdb.tokens" in missing
    for name in gpu.TOKEN_FILES.values():
        (tmp_path / name).write_text("not a zip")
    bad = gpu.token_files(tmp_path, True, tmp_path, 10)  # a folder given with --smoke is read, not replaced
    assert isinstance(bad, str) and "not a zip archive" in bad


def test_emulate_avx2_reruns_bench_under_the_caps(tmp_path, capfd, monkeypatch):
    """--emulate-avx2 restarts `python -m bench` with the caps (ulmfit.emulation) and passes its exit code on."""
    from bench.__main__ import main
    from ulmfit.emulation import AVX2_ENV
    for k in AVX2_ENV:
        monkeypatch.delenv(k, raising=False)
    assert main(["--emulate-avx2", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capfd.readouterr().err  # the restarted process's refusal
    assert not (tmp_path / "results.md").exists()


def test_gpu_section_without_a_gpu_says_so(tmp_path, capsys):
    import torch
    from bench.__main__ import main
    if torch.cuda.is_available():
        pytest.skip("checks the refusal on a machine without a GPU")
    assert main(["--gpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU is visible" in err and "--smoke" in err
    assert not list(tmp_path.iterdir())


def test_gpu_plan_at_gpu_sizes():
    """The GPU run's plan, built without a GPU: stock and ours at bs 64 and 256 in fp16 and bf16 first (always run,
    the side that starts alternating), then classify/predict, the CPU-style variant at each, one switch at a time at
    one size, and the profiles."""
    from bench import gpu
    s = gpu.Sizes.for_run(False, "cuda")
    assert (s.model, s.batch_sizes, s.precisions) == ("awd_lstm", (64, 256), ("fp16", "bf16"))
    jobs = gpu.plan(s, profile=True)
    required = [j for j in jobs if j.required]
    assert jobs[:8] == required and {(j.kind, j.bs, j.precision) for j in required} == \
        {(k, bs, p) for k in ("stock", "ours") for bs in (64, 256) for p in ("fp16", "bf16")}
    assert [j.kind for j in jobs[:4]] == ["stock", "ours", "ours", "stock"]
    assert [j.kind for j in jobs[8:10]] == ["classify", "predict"]
    cpu_style = [j for j in jobs if j.name == "ours, CPU-style"]
    assert len(cpu_style) == 4 and cpu_style[0].options == ("train.host_sync_every", "train.lm_loss")
    assert not any("fused" in o for j in jobs for o in j.overrides)  # no fused optimizer (fastai's Adam stays)
    single = [j for j in jobs if j.name in gpu.ATTRIBUTION]
    assert {j.name for j in single} == {"ours, host_sync_every=1", "ours, lm_loss=blockwise"}
    assert len(single) == len(gpu.ATTRIBUTION) and {(j.bs, j.precision) for j in single} == {gpu.ATTRIBUTION_AT}
    assert [j.kind for j in jobs[-2:]] == ["profile-stock", "profile-ours"]
    assert not any(j.kind.startswith("profile") for j in gpu.plan(s, profile=False))
    smoke = gpu.Sizes.for_run(True, "cpu")
    assert smoke.precisions == ("fp32",) and gpu.Sizes.for_run(True, "cuda").precisions == ("fp16", "bf16")


def test_gpu_compare_budget_and_report():
    """The ratio, the ±2% equal-loss check and the verdict against stock at the same bs and precision; optional runs
    skipped past the budget; the report's GPU columns (memory) -- on made-up rows, not measurements."""
    from bench import gpu

    def row(name, tps, loss, bs=64, prec="fp16", tokens=1000):
        return {"name": name, "bs": bs, "precision": prec, "tokens_per_second": tps, "valid_loss": loss,
                "train_tokens": tokens, "vocab_size": 10, "seconds": 1.0, "checkpoint_seconds": 0.0,
                "process_seconds": 5.0, "peak_gpu_mb": 2048.0}
    lm = [row("stock fastai", 100.0, 5.0), row("ours", 130.0, 5.05), row("ours, CPU-style", 90.0, 5.0),
          row("stock fastai", 100.0, 5.0, 256), row("ours", 140.0, 5.2, 256),  # fast, but 4% off in loss
          row("ours", 200.0, 5.0, 64, "bf16")]                                   # no stock run to compare with
    gpu.compare(lm)
    assert lm[1]["target_met"] and lm[1]["equal_loss"] and abs(lm[1]["vs_stock"] - 1.3) < 1e-9
    assert not lm[2]["target_met"] and not lm[4]["equal_loss"] and not lm[4]["target_met"]
    assert "vs_stock" not in lm[5] and "vs_stock" not in lm[0]
    r = {"settings": {"profile": False, "budget_minutes": 5.0, "model": "awd_lstm", "bptt": 70, "lr": 0.01,
                      "drop_mult": 0.3, "clip": 0.4, "device": "cuda", "target_ratio": 1.25, "loss_tolerance": 0.02,
                      "batch_sizes": [64, 256], "precisions": ["fp16", "bf16"], "lm_tokens": 1000},
         "gpu": {"name": "Some GPU", "capability": "9.0", "memory_gib": 1.0, "multiprocessors": 1, "torch": "t",
                 "cuda": "c", "cudnn": 1, "fastai": "f", "python": "p"},
         "smoke": False, "date": "d", "minutes": 1.0, "hardware": "h", "data": "x", "lm": lm,
         "variants": {k: {"what": w, "overrides": list(o)} for k, (w, o) in gpu.VARIANTS.items()},
         "classify": None, "predict": None, "profile": {}, "skipped": [], "failed": []}
    md = "\n".join(gpu.report(r))
    assert "**Target not met**" in md and "in 1 of 4" in md and "2,048 MiB" in md and "GPU: **Some GPU**" in md
    assert "| 64 | fp16 | ours | 130 | 1.30× | 5.0500 (+1.00%) | yes |" in md and "**PASS**" in md
    assert "| 256 | fp16 | ours | 140 | 1.40× | 5.2000 (+4.00%) | **no** |" in md
    assert "| 64 | fp16 | ours, CPU-style | 90 | 1.44× |" in md  # what the switches buy: 130 / 90

    budget = gpu.Budget(0.001)
    job = gpu.Job("ours", "ours, CPU-style", 64, "fp16")
    budget.done.append((gpu.Job("ours", "ours", 64, "fp16", required=True), 30.0))
    assert budget.estimate(job) == 30.0 and not budget.fits(job)
    assert budget.fits(gpu.Job("stock", "stock fastai", 64, "fp16", required=True))
    assert gpu.Budget(None).fits(job)
    # stock and ours start past the budget, but not when they would end more than GRACE_SECONDS past it
    late = gpu.Budget(0.001)
    late.done.append((gpu.Job("ours", "ours", 64, "fp16", required=True), gpu.GRACE_SECONDS + 10.0))
    assert not late.fits(gpu.Job("ours", "ours", 64, "bf16", required=True))


def test_gpu_missing_options_and_stock_precision(tmp_path):
    """A variant's config key this checkout lacks is found before anything runs (every variant's exists here);
    stock fastai's fp16/bf16 are refused on a CPU (fastai autocasts on CUDA only) before any data is read."""
    import pytest

    from bench import gpu, lm_speed
    assert gpu.missing_options({"train.bs", "train.no_such_switch"}) == {"train.no_such_switch"}
    assert not gpu.missing_options({o.split("=", 1)[0] for _, overrides in {**gpu.VARIANTS, **gpu.ATTRIBUTION}.values()
                                    for o in overrides})
    for precision in ("fp16", "bf16"):
        with pytest.raises(SystemExit, match="CUDA only"):
            lm_speed.stock(["data=wikitext2", f"data.tokens={tmp_path / 'nope.tokens'}"], 8, 70, 1e-2, 0.3, 0.4,
                           device="cpu", precision=precision)


def test_store_integrity_bench_measures_every_step(capsys):
    """``python -m bench.store_integrity`` at a tiny size: every figure measured, the shipped LM's included."""
    from bench import store_integrity
    r = store_integrity.measure(repeat=1, params=100_000)
    assert r["weights_mb"] == 0.4 and r["shipped_mb"] > 10
    assert all(r[k] > 0 for k in ("record_s", "verify_s", "load_s", "write_s", "shipped_verify_s"))
    assert "| check the weights (`Entry.verify`, part of every load) |" in store_integrity.report(r)
