"""Checks that need a CUDA GPU: the CUDA side of every device-dependent branch that tests/test_device_paths.py
covers on CPU. Not collected by pytest (CI has no GPU); a GPU run executes it first:

    python -m tests.gpu_checks --tokens .gpu/corpora/wikitext2.tokens     # exits 1 if a check fails

``--tokens``: a portable tokenized WikiText-2 (``stage=export_tokens``), so that the tiny training runs need
neither spaCy nor raw data on the GPU machine; without it those runs are skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CUDA = torch.device("cuda")
CHECKS: list[tuple[str, Callable[[argparse.Namespace], str]]] = []


def check(fn: Callable[[argparse.Namespace], str]) -> Callable[[argparse.Namespace], str]:
    CHECKS.append((fn.__name__, fn))
    return fn


def _stream(n_docs: int = 50, seed: int = 0):
    from ulmfit.data.streams import TokenStream
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 200, n_docs)
    ids = rng.integers(0, 300, int(lengths.sum())).astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return TokenStream(sources=[ids], source=np.zeros(n_docs, dtype=np.int16), starts=starts,
                       lengths=lengths.astype(np.int64), lookup=np.arange(300, dtype=np.int64))


@check
def lm_batches_reach_the_gpu_unchanged(_: argparse.Namespace) -> str:
    """The pinned, non-blocking copies give the CPU loader's batches, on the GPU."""
    from ulmfit.data.loaders import StreamLMDataLoader
    cpu = list(StreamLMDataLoader(_stream(), bs=8, seq_len=20, device=torch.device("cpu")))
    gpu = list(StreamLMDataLoader(_stream(), bs=8, seq_len=20, device=CUDA))
    assert len(cpu) == len(gpu) > 3
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.device.type == "cuda" and torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu())
    return f"{len(gpu)} batches identical"


@check
def clas_batches_are_pinned(_: argparse.Namespace) -> str:
    from ulmfit.data.loaders import clas_loader
    from ulmfit.data.tokens import Docs
    lengths = np.array([30, 50, 70, 90])
    docs = Docs(np.arange(lengths.sum()) % 100, np.concatenate([[0], np.cumsum(lengths)]), ["a", "b", "a", "b"])
    dl = clas_loader(docs, [0, 1, 0, 1], bs=2, bptt=20, shuffle=False, device=CUDA)
    x, y = next(iter(dl))
    assert dl.fake_l.pin_memory and x.device.type == "cuda" and y.device.type == "cuda"
    return "pin_memory on, batches on cuda"


@check
def both_lm_losses_agree_on_low_precision_logits(_: argparse.Namespace) -> str:
    from fastai.losses import CrossEntropyLossFlat
    from ulmfit.losses import BlockwiseCrossEntropyLossFlat
    torch.manual_seed(0)
    out = []
    for dtype in (torch.float16, torch.bfloat16):
        logits = (torch.randn(64, 70, 30000, device=CUDA) * 3).to(dtype).requires_grad_()
        target = torch.randint(0, 30000, (64, 70), device=CUDA)
        a = BlockwiseCrossEntropyLossFlat()(logits, target)
        b = CrossEntropyLossFlat()(logits.float(), target)
        assert abs(float(a) - float(b)) < 1e-4 * float(b), (float(a), float(b))
        out.append(f"{dtype}: {float(a):.5f} vs {float(b):.5f}")
    return "; ".join(out)


@check
def divergence_is_caught_on_the_gpu(_: argparse.Namespace) -> str:
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.optimizer import SGD
    from ulmfit.training import StopOnNonFinite

    calls = []

    def loss(pred, y):
        calls.append(1)
        v = torch.nn.functional.mse_loss(pred, y)
        return v * float("nan") if len(calls) == 8 else v
    x = torch.randn(256, 3)
    ds = list(zip(x, x.sum(1, keepdim=True)))
    dls = DataLoaders.from_dsets(ds, ds[:16], bs=4, shuffle=False, device=CUDA)
    learn = Learner(dls, torch.nn.Linear(3, 1), loss_func=loss, opt_func=SGD, lr=0.01)
    stop = StopOnNonFinite(None, 0, every=10)
    learn.fit(1, cbs=[stop])
    assert stop.diverged is not None and learn.train_iter == 9, (stop.diverged, learn.train_iter)
    return stop.diverged[1]


@check
def smoothed_loss_stays_on_the_gpu(_: argparse.Namespace) -> str:
    from fastai.learner import AvgSmoothLoss
    from ulmfit.training import DeviceSmoothLoss

    class L:
        loss = None
    ours, stock = DeviceSmoothLoss(), AvgSmoothLoss()
    for v in (3.0, 2.5, 2.7):
        L.loss = torch.tensor(v, device=CUDA)
        ours.accumulate(L)
        stock.accumulate(L)
    assert ours.val.device.type == "cuda" and abs(float(ours.value) - float(stock.value)) < 1e-6
    return f"{float(ours.value):.6f} on {ours.val.device}"


@check
def precision_auto_on_this_gpu(_: argparse.Namespace) -> str:
    from ulmfit.hardware import resolve_precision
    got = resolve_precision("auto", CUDA)
    assert got == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    return got


def _tiny_pretrain(args: argparse.Namespace, precision: str, home: Path) -> dict:
    cmd = [sys.executable, "-m", "ulmfit", "stage=pretrain", "data=wikitext2", f"data.tokens={args.tokens}",
           "model=awd_lstm_tiny", "train.epochs=1", "train.bs=32", "train.bptt=35", "train.device=cuda",
           f"train.precision={precision}", f"run_name=gpu-{precision}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "ULMFIT_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    entry = home / "store" / "pretrain" / f"gpu-{precision}"
    lineage = json.loads((entry / "lineage.json").read_text())
    metrics = json.loads((entry / "metrics.json").read_text())
    return {"lineage": lineage, "metrics": metrics, "seconds": time.perf_counter() - t0}


@check
def tiny_pretrain_runs_in_fp16_and_bf16(args: argparse.Namespace) -> str:
    if not args.tokens:
        return "skipped (no --tokens)"
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp16", "bf16"):
            r = _tiny_pretrain(args, precision, Path(tmp))
            lin, m = r["lineage"], r["metrics"]
            assert lin["precision"] == precision and lin["host_sync_every"] > 1 and lin["lm_loss"] == "fastai", lin
            assert np.isfinite(m["valid_loss"]), m
            out.append(f"{precision}: valid loss {m['valid_loss']:.3f}, {m['tokens_per_second']:.0f} tok/s, "
                       f"{r['seconds']:.0f} s with start-up")
    return "; ".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", default="", help="portable tokenized WikiText-2 for the tiny training runs")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("tests.gpu_checks: no CUDA device visible; these checks only run on a GPU.", file=sys.stderr)
        return 2
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    failed = 0
    for name, fn in CHECKS:
        t0 = time.perf_counter()
        try:
            detail, status = fn(args), "ok"
        except Exception:  # report every check, then fail
            detail, status = traceback.format_exc(limit=3).strip().splitlines()[-1], "FAILED"
            failed += 1
        print(f"{status:6s} {name} ({time.perf_counter() - t0:.1f} s): {detail}", flush=True)
    print(f"{len(CHECKS) - failed}/{len(CHECKS)} GPU checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
