"""The allocator helpers: what a process runs on, how a child gets jemalloc/tcmalloc, the CPU warning."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import REPO
from ulmfit import allocator, progress

PROBE = "from ulmfit.allocator import active_allocator; print(active_allocator())"


def child_allocator(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_a_plain_process_runs_on_glibc():
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    assert child_allocator(env) == "glibc"


@pytest.mark.skipif(allocator.find_replacement() is None, reason="no jemalloc/tcmalloc installed here")
def test_preload_env_gives_a_child_the_replacement():
    env = allocator.preload_env({k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
    assert child_allocator(env) in ("jemalloc", "tcmalloc")


def test_preload_env_uses_ULMFIT_MALLOC_and_keeps_other_preloads(tmp_path, monkeypatch):
    lib = tmp_path / "libjemalloc.so.2"
    lib.write_bytes(b"")
    monkeypatch.setenv("ULMFIT_MALLOC", str(lib))
    assert allocator.preload_env({"LD_PRELOAD": "/x/libother.so"})["LD_PRELOAD"] == f"{lib}:/x/libother.so"
    # one already preloaded is left alone; a missing library preloads nothing
    assert allocator.preload_env({"LD_PRELOAD": "/y/libtcmalloc.so.4"})["LD_PRELOAD"] == "/y/libtcmalloc.so.4"
    monkeypatch.setenv("ULMFIT_MALLOC", str(tmp_path / "missing.so"))
    assert "LD_PRELOAD" not in allocator.preload_env({})


def _advice_run(after_minutes: float, device: str = "cpu", batches: int = 3) -> None:
    """One fit of ``batches`` training batches through an AllocatorAdvice callback."""
    cb = progress.AllocatorAdvice(after_minutes)
    cb.learn = SimpleNamespace(dls=SimpleNamespace(device=torch.device(device)), training=True)
    cb.before_fit()
    for _ in range(batches):
        cb.after_batch()


def test_long_cpu_training_under_glibc_warns_once_with_the_fix(monkeypatch, caplog):
    monkeypatch.setattr(progress, "active_allocator", lambda: "glibc")
    monkeypatch.setattr(progress.AllocatorAdvice, "warned", False)
    with caplog.at_level(logging.WARNING, logger="ulmfit.progress"):
        _advice_run(after_minutes=60)  # a short run: nothing to say
        _advice_run(after_minutes=0, device="cuda")  # GPU runs are not affected
        assert not caplog.records
        _advice_run(after_minutes=0)
        _advice_run(after_minutes=0)  # once per process (a pipeline runs several stages)
    assert len(caplog.records) == 1 and "LD_PRELOAD=" in caplog.text and "glibc malloc" in caplog.text
    caplog.clear()
    monkeypatch.setattr(progress.AllocatorAdvice, "warned", False)
    monkeypatch.setattr(progress, "active_allocator", lambda: "jemalloc")
    with caplog.at_level(logging.WARNING, logger="ulmfit.progress"):
        _advice_run(after_minutes=0)
    assert not caplog.records


def test_the_cli_restarts_itself_under_the_replacement(tmp_path, monkeypatch):
    """python -m ulmfit runs under tcmalloc/jemalloc wherever one is installed (faster steps, flat memory), once,
    and not when asked for the system's malloc or when one is preloaded already."""
    lib = tmp_path / "libtcmalloc_minimal.so.4"
    lib.write_bytes(b"")
    monkeypatch.setenv("ULMFIT_MALLOC", str(lib))
    command, env = allocator.reexec_with_replacement(["stage=tfidf"], {"ULMFIT_MALLOC": str(lib)})
    assert command[1:] == ["-m", "ulmfit", "stage=tfidf"] and env["LD_PRELOAD"] == str(lib)
    assert allocator.reexec_with_replacement(["x"], env) is None  # the restarted process goes on
    assert allocator.reexec_with_replacement(["x"], {"ULMFIT_MALLOC": "system"}) is None
    assert allocator.reexec_with_replacement(["x"], {"LD_PRELOAD": "/y/libjemalloc.so.2"}) is None


@pytest.mark.skipif(allocator.find_replacement() is None, reason="no jemalloc/tcmalloc installed here")
def test_a_cli_run_reports_the_replacement_in_its_lineage(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ULMFIT_MALLOC")}
    out = subprocess.run([sys.executable, "-m", "ulmfit", "stage=tfidf", "data=trec_sample", "run_name=t",
                          f"paths.root={tmp_path}", "tokenizer.n_workers=0"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    import json
    lineage = json.loads((tmp_path / "store" / "tfidf" / "t" / "lineage.json").read_text())
    assert "malloc" in json.dumps(lineage.get("environment", {})), lineage.get("environment")
