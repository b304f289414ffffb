"""(a) LM training speed, ours vs stock fastai, and (b) the fraction of the matmul roofline it reaches.

Both sides train the same AWD-LSTM (``model=awd_lstm_cpu`` sizes and dropouts) on the same WikiText-2
slice, batch size and BPTT, one epoch of one-cycle at the same LR, seed 0, each in a fresh process:

* stock: ``language_model_learner(dls, AWD_LSTM, config=..., pretrained=False).fit_one_cycle(1, lr)`` on
  fastai's ``LMDataLoader`` (lists of tensors), fp32 (fastai has no CPU mixed precision);
* ours: ``python -m ulmfit stage=pretrain`` (streamed loader, ``train.precision`` fp32, and bf16 where the
  device runs it).

Tokens/s = training tokens / wall seconds of the fit call (training + its one validation pass) on both sides.
The roofline (b) times every matmul of that fit (forward and both backward products of each LSTM input
projection, each recurrent step and the decoder, at their exact shapes) with ``torch.matmul`` on this
machine, and divides by the fit's wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from bench.common import emit, run_json, wikitext_slice
from ulmfit.processes import run_ulmfit

MODEL = "awd_lstm_cpu"


def model_dims(model: str = MODEL) -> dict[str, Any]:
    """Sizes and dropouts of ``conf/model/<model>.yaml`` (over awd_lstm.yaml, which every size extends)."""
    from omegaconf import OmegaConf
    from bench.common import REPO
    cfg = OmegaConf.merge(OmegaConf.load(REPO / "conf/model/awd_lstm.yaml"), OmegaConf.load(REPO / f"conf/model/{model}.yaml"))
    return {k: v for k, v in OmegaConf.to_container(cfg).items() if k not in ("defaults", "head", "arch")}


# --------------------------------------------------------------------------------------------- stock fastai
def lm_docs(data: Sequence[str]) -> tuple[Any, Any, list[str]]:
    """The training and validation documents (``TokenStream``s, vocab ids) and the vocabulary that
    ``python -m ulmfit stage=pretrain <data>`` trains on, through the stage's own calls: ``load_corpus`` (a raw
    folder via the token cache, or a portable file with ``data.tokens``), ``build_vocab`` over the whole train
    part, ``lm_splits``, then ``within_budget`` for ``stage.lm_tokens`` (a seeded subset of whole documents).

    ``data``: the overrides that pick the corpus on both sides, e.g. ``data=wikitext2 data.tokens=<file>
    stage.lm_tokens=1500000 seed=0 paths.cache=<dir>``."""
    from ulmfit.config import compose
    from ulmfit.data import build_vocab, lm_splits, load_corpus
    from ulmfit.data.streams import within_budget

    cfg = compose("stage=pretrain", *data)
    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache)
    vocab = build_vocab(corpus, ["train"], cfg.data.max_vocab, cfg.data.min_freq)
    train, valid = lm_splits(corpus, vocab, ["train"], cfg.data.valid_frac, cfg.data_seed)  # as the stage draws them
    return within_budget(train, cfg.stage.lm_tokens, cfg.data_seed), valid, vocab


def raw_wikitext(root: Path, cache: Path) -> list[str]:
    """``lm_docs``' overrides for a raw WikiText folder (section (a)): its whole train part, seed 0 as ours."""
    return ["data=wikitext2", f"data.root={root}", f"paths.cache={cache}", "seed=0"]


def stock(data: Sequence[str], bs: int, bptt: int, lr: float, drop_mult: float, clip: float,
          device: str = "cpu", precision: str = "fp32", model: str = MODEL) -> dict[str, Any]:
    """fastai's own LM path on the documents and vocabulary ours trains on (``lm_docs(data)``); the tokens come
    from our cache (identical to fastai's tokenizer, see tests) or a portable file.

    ``precision``: fp32, or on CUDA fastai's ``to_fp16()`` / ``to_bf16()`` (its ``MixedPrecision`` autocasts on
    CUDA only, so it is refused on a CPU rather than run as fp32 under another name)."""
    import torch
    from fastai.callback.training import GradientClip
    from fastai.data.core import DataLoaders
    from fastai.metrics import Perplexity, accuracy
    from fastai.text.all import AWD_LSTM, LMDataLoader, awd_lstm_lm_config, language_model_learner
    from fastai.torch_core import set_seed

    dev = torch.device(device)
    if precision not in ("fp32", "fp16", "bf16") or (precision != "fp32" and dev.type != "cuda"):
        raise SystemExit(f"stock: precision {precision!r} on {dev}: fastai's to_fp16/to_bf16 autocast on CUDA only; "
                         "use fp32 on a CPU.")
    train, valid, vocab = lm_docs(data)
    tensors = {p: [torch.as_tensor(s.doc(i), dtype=torch.long) for i in range(len(s))]
               for p, s in (("train", train), ("valid", valid))}
    set_seed(0, reproducible=True)
    dls = DataLoaders(LMDataLoader(tensors["train"], bs=bs, seq_len=bptt, shuffle=True),
                      LMDataLoader(tensors["valid"], bs=bs, seq_len=bptt), device=dev)
    dls.vocab = vocab
    dims = model_dims(model)
    config = {**awd_lstm_lm_config, **{k: dims[k] for k in ("emb_sz", "n_hid", "n_layers", "output_p", "hidden_p",
                                                              "input_p", "embed_p", "weight_p", "tie_weights", "out_bias")}}
    learn = language_model_learner(dls, AWD_LSTM, config=config, drop_mult=drop_mult, pretrained=False,
                                   metrics=[accuracy, Perplexity()], cbs=GradientClip(clip))
    learn.remove_cbs([cb for cb in learn.cbs if type(cb).__name__ == "ProgressCallback"])
    if precision != "fp32":
        learn = learn.to_fp16() if precision == "fp16" else learn.to_bf16()
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    learn.fit_one_cycle(1, lr)
    if cuda:
        torch.cuda.synchronize(dev)  # the recorder's values are read on the host already; this only makes it sure
    seconds = time.perf_counter() - t0
    n_tokens = sum(len(t) for t in tensors["train"])
    return {"seconds": seconds, "train_tokens": n_tokens, "tokens_per_second": n_tokens / seconds,
            "valid_loss": float(learn.recorder.values[-1][1]), "steps": len(dls.train), "valid_batches": len(dls.valid),
            "vocab_size": len(vocab), "device": str(dev), "precision": precision, "model": model,
            "peak_gpu_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None}


# --------------------------------------------------------------------------------------------- roofline
def matmul_shapes(dims: dict[str, Any], vocab: int, bs: int, bptt: int) -> list[tuple[int, int, int, int]]:
    """(M, K, N, count) of the forward matmuls of one AWD-LSTM batch (embedding lookups are not matmuls)."""
    emb, hid, n_layers = dims["emb_sz"], dims["n_hid"], dims["n_layers"]
    shapes = []
    for layer in range(n_layers):
        n_in = emb if layer == 0 else hid
        h = emb if layer == n_layers - 1 and dims["tie_weights"] else hid
        shapes.append((bs * bptt, n_in, 4 * h, 1))  # input projection of all time steps
        shapes.append((bs, h, 4 * h, bptt))         # recurrent product, one per time step
    shapes.append((bs * bptt, emb, vocab, 1))       # decoder
    return shapes


def time_matmul(m: int, k: int, n: int, reps: int) -> float:
    import torch
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(2):
        torch.matmul(a, b)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    return (time.perf_counter() - t0) / reps


def roofline(dims: dict[str, Any], vocab: int, bs: int, bptt: int, steps: int, valid_batches: int) -> dict[str, Any]:
    """Seconds and FLOPs of every matmul in a fit: forward + 2 backward products per training step,
    forward only per validation batch."""
    train_s = valid_s = flops_train = flops_valid = 0.0
    for m, k, n, count in matmul_shapes(dims, vocab, bs, bptt):
        reps = max(3, min(200, int(2e9 / (2 * m * k * n))))
        fwd = time_matmul(m, k, n, reps)
        bwd = time_matmul(m, n, k, reps) + time_matmul(k, m, n, reps)  # dX = dY W^T, dW = X^T dY
        train_s += (fwd + bwd) * count
        valid_s += fwd * count
        flops_train += 3 * 2 * m * k * n * count
        flops_valid += 2 * m * k * n * count
    return {"matmul_seconds": train_s * steps + valid_s * valid_batches,
            "flops": flops_train * steps + flops_valid * valid_batches,
            "flops_per_token_train": flops_train / (bs * bptt)}


# --------------------------------------------------------------------------------------------- orchestration
def run(data: Path, steps: int, lr: float = 1e-2, drop_mult: float = 0.3, bs: int = 64, bptt: int = 70,
        clip: float = 0.4, smoke: bool = False) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="ulmfit-bench-lm-"))
    lines_per_step = bs * bptt / 65  # WikiText-2 averages ~65 fastai tokens per line
    root = wikitext_slice(data, work / "data", {"train": int(steps * lines_per_step) + 1,
                                                "valid": 200 if smoke else 1000, "test": 20})
    cache = work / "cache"
    results: dict[str, Any] = {"model": MODEL, "bs": bs, "bptt": bptt, "lr": lr, "drop_mult": drop_mult, "clip": clip}
    results["stock"] = run_json("bench.lm_speed", "stock", "--root", str(root), "--cache", str(cache), "--bs", str(bs),
                                "--bptt", str(bptt), "--lr", str(lr), "--drop-mult", str(drop_mult), "--clip", str(clip))
    from ulmfit.errors import UsageError
    from ulmfit.hardware import resolve_device, resolve_precision
    results["sides"] = ["stock", "fp32"]
    try:
        resolve_precision("bf16", resolve_device("auto"))
        results["sides"].append("bf16")
    except UsageError as e:  # e.g. a CPU without AVX-512: no bf16 LSTM in oneDNN
        results["bf16_skipped"] = str(e)
    for precision in reversed(results["sides"][1:]):  # ours: bf16 (where it runs) first, then fp32
        home = work / precision
        run_ulmfit("stage=pretrain", "data=wikitext2", f"data.root={root}", f"model={MODEL}", "train.epochs=1",
                   f"train.lr={lr}", f"train.drop_mult={drop_mult}", f"train.bs={bs}", f"train.bptt={bptt}",
                   f"train.eval_bs={bs}", "train.schedule=one_cycle", f"train.clip={clip}", f"train.precision={precision}",
                   "seed=0", f"paths.cache={cache}", "run_name=bench", home=home, allocator=False)
        m = json.loads((home / "store" / "pretrain" / "bench" / "metrics.json").read_text())
        results[precision] = {"seconds": m["train_seconds"], "train_tokens": m["train_tokens"],
                              "tokens_per_second": m["tokens_per_second"], "valid_loss": m["valid_loss"]}
    s = results["stock"]
    results["roofline"] = roofline(model_dims(), s["vocab_size"], bs, bptt, s["steps"], s["valid_batches"])
    r = results["roofline"]
    for side in results["sides"]:
        results[side]["achieved_gflops"] = r["flops"] / results[side]["seconds"] / 1e9
        results[side]["roofline_fraction"] = r["matmul_seconds"] / results[side]["seconds"]
        results[side]["speedup_vs_stock"] = results[side]["tokens_per_second"] / s["tokens_per_second"]
        results[side]["valid_loss_vs_stock"] = results[side]["valid_loss"] / s["valid_loss"] - 1
    results["roofline"]["matmul_gflops"] = r["flops"] / r["matmul_seconds"] / 1e9
    return results


def report(r: dict[str, Any]) -> list[str]:
    rows = [f"| {side} | {r[side]['tokens_per_second']:,.0f} | {r[side]['speedup_vs_stock']:.2f}x | "
            f"{r[side]['valid_loss']:.4f} ({100 * r[side]['valid_loss_vs_stock']:+.2f}%) | "
            f"{math.exp(r[side]['valid_loss']):.1f} | {r[side]['achieved_gflops']:.1f} | "
            f"{100 * r[side]['roofline_fraction']:.0f}% | {r[side]['seconds']:.0f} s |"
            for side in r["sides"]]
    s = r["stock"]
    return [
        "## (a) LM training speed vs stock fastai, (b) matmul roofline",
        "",
        f"AWD-LSTM `{r['model']}` (vocab {s['vocab_size']:,}), bs {r['bs']}, bptt {r['bptt']}, one epoch of one-cycle "
        f"(lr {r['lr']}, drop_mult {r['drop_mult']}, gradient clipping {r['clip']} via fastai's `GradientClip`, seed 0) = **{s['steps']} steps** on the same "
        f"{s['train_tokens']:,}-token WikiText-2 slice; validation on {s['valid_batches']} batches. "
        "stock = `language_model_learner(...).fit_one_cycle` on fastai's `LMDataLoader`; fp32/bf16 = "
        "`python -m ulmfit stage=pretrain train.precision=...`."
        + (f" No bf16 row: {r['bf16_skipped']}" if "bf16_skipped" in r else ""),
        "",
        "| path | tokens/s | vs stock | valid loss after the same steps (vs stock) | valid ppl | GFLOP/s | "
        "matmul roofline | fit time |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Roofline: the fit's {r['roofline']['flops'] / 1e12:.2f} TFLOP of matmuls "
        f"({r['roofline']['flops_per_token_train'] / 1e6:.1f} MFLOP per training token) take "
        f"{r['roofline']['matmul_seconds']:.0f} s as bare fp32 `torch.matmul` calls of the same shapes on this "
        f"machine ({r['roofline']['matmul_gflops']:.1f} GFLOP/s); the fraction is that time over the fit's wall time.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("stock")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--bptt", type=int, default=70)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--drop-mult", type=float, default=0.3)
    p.add_argument("--clip", type=float, default=0.4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--model", default=MODEL, help="a conf/model/ name")
    a = parser.parse_args()
    emit(stock(raw_wikitext(a.root, a.cache), a.bs, a.bptt, a.lr, a.drop_mult, a.clip, a.device, a.precision, a.model))


if __name__ == "__main__":
    main()
