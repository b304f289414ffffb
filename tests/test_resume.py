"""Resume: a seeded run killed with SIGKILL mid-epoch and continued with resume=true ends exactly where an
uninterrupted run ends (weights, metrics, curves); the checkpoint rules (refusals) around it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import TINY, imdb_csv, run_cli, step_mapping

TIMING = {"train_seconds", "tokens_per_second", "tokenize_seconds", "tokenize_cache_hit"}


def _entry(home: Path, stage: str, name: str) -> Path:
    return home / "store" / stage / name


def _kill_after_checkpoint(args: list[str], home: Path, stage: str, name: str, n: int, wait: float = 0.2) -> None:
    """Start the run, wait until its n-th epoch checkpoint exists, then SIGKILL it (it is in epoch n+1)."""
    env = {**os.environ, "ULMFIT_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "ulmfit", *args], cwd=home, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    ckpts = home / "store" / stage / f".resume-{name}"
    deadline = time.time() + 300
    # checkpoint n or a later one: each new checkpoint replaces the last, so a fast run may skip past n's moment
    while not any(int(p.name.split("-")[1]) >= n for p in ckpts.glob("epoch-*")):
        assert proc.poll() is None, f"the run ended before checkpoint {n}: {proc.stderr.read()[-2000:]}"
        assert time.time() < deadline, "no checkpoint after 300 s"
        time.sleep(0.01)
    time.sleep(wait)  # into the next epoch's batches
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not _entry(home, stage, name).exists(), "a killed run must not leave an entry"


def _same_results(home: Path, stage: str, a: str, b: str) -> dict:
    ma, mb = (json.loads((_entry(home, stage, n) / "metrics.json").read_text()) for n in (a, b))
    assert {k: v for k, v in ma.items() if k not in TIMING} == {k: v for k, v in mb.items() if k not in TIMING}
    wa, wb = (load_file(_entry(home, stage, n) / "model.safetensors") for n in (a, b))
    assert wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa), "weights differ"
    ca, cb = (json.loads((_entry(home, stage, n) / "curves.json").read_text()) for n in (a, b))
    assert ca == cb
    assert not (home / "store" / stage / f".resume-{b}").exists(), "checkpoints are removed once the entry exists"
    return mb


@pytest.mark.parametrize("stage,kill_after", [("pretrain", 1), ("classify", 2)])
def test_killed_run_resumes_to_the_same_result(stage, kill_after, mini_wikitext, mini_imdb, tmp_path):
    home = tmp_path
    if stage == "pretrain":  # one phase, killed in its 2nd of 3 epochs
        args = ["stage=pretrain", "data=wikitext2", f"data.root={mini_wikitext}", *TINY, "train.epochs=3", "seed=5"]
    else:  # gradual unfreezing from a random init: 4 phases (head, +1, +2, all for 2 epochs); killed in phase 3
        args = ["stage=classify", *imdb_csv(mini_imdb), "stage.parent_stage=none", *TINY, "train.epochs=2",
                "train.bs=8", "seed=5"]
    straight = run_cli(*args, "run_name=straight", cwd=home)
    assert straight.returncode == 0, straight.stderr[-2000:]

    _kill_after_checkpoint([*args, "run_name=cut"], home, stage, "cut", kill_after)
    again = run_cli(*args, "run_name=cut", cwd=home)  # without resume=true: refused, checkpoint kept
    assert again.returncode == 2 and "resume=true" in again.stderr
    assert (home / "store" / stage / ".resume-cut").is_dir()

    resumed = run_cli(*args, "run_name=cut", "resume=true", cwd=home)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming" in resumed.stdout + resumed.stderr
    metrics = _same_results(home, stage, "straight", "cut")
    resumed_from = json.loads((_entry(home, stage, "cut") / "lineage.json").read_text())["resumed"]
    assert [r["changed"] for r in resumed_from] == [{}] and resumed_from[0]["checkpoint"] >= f"epoch-{kill_after:04d}"
    straight_metrics = json.loads((_entry(home, stage, "straight") / "metrics.json").read_text())
    for k, v in metrics.items():  # the record the resolution note quotes (pytest -s)
        if isinstance(v, float) and k not in TIMING:
            print(f"\n{stage} {k}: uninterrupted {straight_metrics[k]!r} / killed+resumed {v!r}", end="")


def test_run_killed_within_an_epoch_resumes_to_the_same_result(mini_wikitext, tmp_path):
    """A long LM epoch checkpoints within itself (train.checkpoint_minutes; 0 = after every batch): killed in the
    middle of an epoch, the run continues at the next batch with the same document order, hidden state,
    LR-schedule position and RNG states, and ends exactly as the uninterrupted run."""
    args = ["stage=pretrain", "data=wikitext2", f"data.root={mini_wikitext}", *TINY, "train.epochs=2", "seed=3",
            "train.checkpoint_minutes=0", "train.schedule=stlr"]
    straight = run_cli(*args, "run_name=straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-2000:]

    _kill_after_checkpoint([*args, "run_name=cut"], tmp_path, "pretrain", "cut", 3, wait=0.0)
    ckpt_dir = tmp_path / "store" / "pretrain" / ".resume-cut"
    latest = sorted(p for p in ckpt_dir.glob("epoch-*") if (p / "state.json").is_file())[-1]
    state = json.loads((latest / "state.json").read_text())
    assert state["position"]["batch"] > 0, "expected a checkpoint within an epoch"
    assert (latest / "position.safetensors").is_file()

    resumed = run_cli(*args, "run_name=cut", "resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{state['position']['batch']} batches into the next" in resumed.stdout + resumed.stderr
    _same_results(tmp_path, "pretrain", "straight", "cut")


def test_resume_refusals(mini_wikitext, tmp_path):
    base = ["stage=pretrain", "data=wikitext2", f"data.root={mini_wikitext}", *TINY]
    no_name = run_cli(*base, "resume=true", cwd=tmp_path)
    assert no_name.returncode == 2 and "run_name" in no_name.stderr
    nothing = run_cli(*base, "resume=true", "run_name=never", cwd=tmp_path)
    assert nothing.returncode == 2 and "has no checkpoint" in nothing.stderr

    _kill_after_checkpoint([*base, "train.epochs=3", "run_name=r"], tmp_path, "pretrain", "r", 1)
    other_model = run_cli(*base, "train.epochs=3", "run_name=r", "resume=true", "model.emb_sz=24", cwd=tmp_path)
    assert other_model.returncode == 2 and "different config" in other_model.stderr and "model.emb_sz" in other_model.stderr
    assert not list((tmp_path / "store" / "pretrain").glob("r")), "a refused resume writes nothing"


def test_divergence_stops_and_keeps_the_last_good_checkpoint(mini_wikitext, tmp_path):
    """NaN/inf loss: training stops at that batch, the last epoch's checkpoint stays intact, and the run can be
    continued from it with a saner LR (a changed train.* option is allowed on resume, and recorded)."""
    args = ["stage=pretrain", "data=wikitext2", f"data.root={mini_wikitext}", *TINY, "train.epochs=3",
            "run_name=d", "train.clip=null"]
    _kill_after_checkpoint(args, tmp_path, "pretrain", "d", 1)
    ckpt_dir = tmp_path / "store" / "pretrain" / ".resume-d"
    good = sorted(ckpt_dir.glob("epoch-*"))[-1]
    files = {p.name: p.read_bytes() for p in good.iterdir()}

    blown = run_cli(*args, "resume=true", "train.lr=1e12", cwd=tmp_path)
    assert blown.returncode == 2, blown.stderr[-2000:]
    assert "Training diverged" in blown.stderr and f"last good checkpoint is kept in {good}" in blown.stderr
    assert {p.name: p.read_bytes() for p in good.iterdir()} == files, "the good checkpoint must stay untouched"
    assert sorted(ckpt_dir.glob("epoch-*")) == [good] and not (tmp_path / "store" / "pretrain" / "d").exists()

    fixed = run_cli(*args, "resume=true", "train.lr=1e-3", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    lineage = json.loads((_entry(tmp_path, "pretrain", "d") / "lineage.json").read_text())
    assert lineage["resumed"][-1]["changed"] == {"train.lr": [0.005, 0.001]}, lineage["resumed"]


def test_interrupted_pipeline_resumes_where_it_was_cut(mini_wikitext, mini_imdb, tmp_path):
    """A pipeline killed during lm_finetune, run again with the same run_name: the runner (ulmfit.recipes) reuses
    the finished pretrain entry, resumes lm_finetune from its checkpoint and runs classify."""
    csv = imdb_csv(mini_imdb)
    tiny = [o for o in TINY if not o.startswith(("train.epochs=", "train.bs="))]  # the command line would win
    args = ["stage=pipeline", "run_name=p", *tiny,
            f"++stage.steps.pretrain={step_mapping('data=wikitext2', f'data.root={mini_wikitext}')}",
            f"++stage.steps.lm_finetune={step_mapping(*csv, 'train.epochs=4', 'train.bs=8')}",
            f"++stage.steps.classify={step_mapping(*csv, 'train.bs=16')}"]
    _kill_after_checkpoint(args, tmp_path, "lm_finetune", "p-lm_finetune", 1, wait=0.1)
    pretrain_created = json.loads((_entry(tmp_path, "pretrain", "p-pretrain") / "lineage.json").read_text())["created"]
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    log = out.stdout + out.stderr
    assert "pretrain/p-pretrain exists, reused" in log and "Resuming lm_finetune/p-lm_finetune" in log
    assert json.loads((_entry(tmp_path, "pretrain", "p-pretrain") / "lineage.json").read_text())["created"] == \
        pretrain_created
    lineage = json.loads((_entry(tmp_path, "lm_finetune", "p-lm_finetune") / "lineage.json").read_text())
    assert lineage["resumed"] and lineage["parent"]["name"] == "p-pretrain"
    clas = json.loads((_entry(tmp_path, "classify", "p-classify") / "lineage.json").read_text())
    assert clas["parent"]["name"] == "p-lm_finetune"
