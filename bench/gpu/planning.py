"""The GPU section's plan (edit here): which runs there are, at which sizes, in which order, and which of them
still fit in the time budget as the section goes (``Budget``). No run starts from here."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

BATCH_SIZES = (64, 256)
PRECISIONS = ("fp16", "bf16")
MODEL = "awd_lstm"  # the paper's 400/1152/3
LR, DROP_MULT, CLIP, BPTT = 1e-2, 0.3, 0.4, 70  # as bench/lm_speed.py
TARGET_RATIO = 1.25     # ours / stock tokens/s, at ...
LOSS_TOLERANCE = 0.02   # ... a validation loss within ±2% of stock's
LM_TOKENS = 1_000_000   # stage.lm_tokens: WikiText-2 training tokens per LM run (of ~2.4M); the 8 stock/ours runs
                        # must leave the 5-minute budget room for classify, predict and some variants
BUDGET_MINUTES = 5.0    # the optional runs start only while the section fits (bench part of a GPU call: timeout 360)
GRACE_SECONDS = 45      # stock and ours start unless they would end this far past the budget (then: reported skipped)
TOKEN_FILES = {"wikitext2": "wikitext2.tokens", "imdb": "imdb.tokens"}  # in --tokens (experiments.gpu_payload)
# --smoke without --tokens: the same files exported from the embedded samples (data config overrides)
SAMPLE_EXPORTS = {"wikitext2": ("data=wikitext2_sample",), "imdb": ("data=imdb_sample", "data.parts=[train,test]")}

# The runs of ours at every batch size and precision: row name -> (what it shows, overrides beyond the common
# ones). "ours" is what a user gets (every device switch on auto) and the one the target applies to.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ours": ("what a user gets: every device switch on `auto`", ()),
    "ours, CPU-style": ("the CPU's settings on the GPU: the loss read every step, block-wise LM loss",
                        ("train.host_sync_every=1", "train.lm_loss=blockwise")),
}
# One switch at a time back to its CPU setting (the others on auto), at ATTRIBUTION_AT only: ours' tokens/s over
# such a run's is what that switch buys. The pinned, non-blocking batch copies have no switch, so no row.
ATTRIBUTION: dict[str, tuple[str, tuple[str, ...]]] = {
    "ours, host_sync_every=1": ("the loss read on the host every step", ("train.host_sync_every=1",)),
    "ours, lm_loss=blockwise": ("the block-wise LM loss (the CPU's)", ("train.lm_loss=blockwise",)),
}
ATTRIBUTION_AT = (256, "bf16")
PROFILE_AT = (256, "bf16")  # --profile: a few steps of stock and of ours at this batch size and precision


@dataclass(frozen=True)
class Sizes:
    """How big each part is: the GPU run's, or the smoke run's (seconds on a CPU, for CI)."""
    device: str                       # cuda | cpu
    model: str                        # a conf/model/ name
    batch_sizes: tuple[int, ...]
    precisions: tuple[str, ...]
    lm_tokens: int                    # stage.lm_tokens of each LM run (0: every WikiText-2 training document)
    clas_train: int                   # data.n_train: IMDB labelled reviews, the classifier epoch's and its validation
    clas_valid: int                   # data.n_valid: at most this many of them held out (data.valid_frac)
    clas_test: int                    # data.n_test: test reviews scored after the epoch
    clas_bs: int
    predict_docs: int                 # IMDB test reviews predicted from token ids
    profile_steps: tuple[int, int]    # (steps skipped, steps profiled)
    attribution: bool                 # run ATTRIBUTION
    timeout: int                      # seconds per process

    @classmethod
    def for_run(cls, smoke: bool, device: str, lm_tokens: int | None = None) -> "Sizes":
        if smoke:  # CUDA smoke keeps the GPU precisions, so a GPU machine can check the code path in seconds
            return cls(device, "awd_lstm_tiny", (16,), PRECISIONS if device == "cuda" else ("fp32",),
                       16 * BPTT * 6 if lm_tokens is None else lm_tokens, 90, 10, 40, 16, 30, (1, 2), False, 300)
        return cls(device, MODEL, BATCH_SIZES, PRECISIONS, LM_TOKENS if lm_tokens is None else lm_tokens,
                   3600, 400, 1000, 64, 2000, (10, 5), True, 600)


@dataclass
class Job:
    kind: str                          # stock | ours | classify | predict | profile-stock | profile-ours
    name: str                          # the row's name
    bs: int | None = None
    precision: str | None = None
    overrides: tuple[str, ...] = ()
    required: bool = False             # run even past the budget (stock and ours: the target's runs)
    options: tuple[str, ...] = field(default=())  # config keys the overrides need

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}/{self.bs}/{self.precision}"


def plan(s: Sizes, profile: bool) -> list[Job]:
    """Every run, in the order they start: the target's runs first, the optional ones after."""
    configs = [(bs, p) for bs in s.batch_sizes for p in s.precisions]
    jobs: list[Job] = []
    for i, (bs, p) in enumerate(configs):  # which side goes first alternates: no side always meets a cold GPU
        pair = [Job("stock", "stock fastai", bs, p, required=True), Job("ours", "ours", bs, p, required=True)]
        jobs += pair[::-1] if i % 2 else pair
    jobs += [Job("classify", "classify", None, None), Job("predict", "predict", None, None)]
    for name, (_, overrides) in VARIANTS.items():
        if name != "ours":
            jobs += [Job("ours", name, bs, p, overrides) for bs, p in configs]
    if s.attribution:
        bs, p = ATTRIBUTION_AT if ATTRIBUTION_AT in configs else configs[-1]
        jobs += [Job("ours", name, bs, p, overrides) for name, (_, overrides) in ATTRIBUTION.items()]
    if profile:
        bs, p = PROFILE_AT if PROFILE_AT in configs else configs[-1]
        jobs += [Job("profile-stock", "stock fastai", bs, p), Job("profile-ours", "ours", bs, p)]
    for j in jobs:
        j.options = tuple(o.split("=", 1)[0] for o in j.overrides)
    return jobs


def missing_options(keys: set[str]) -> set[str]:
    """The config keys (``train.lm_loss``, ...) this checkout's composed pretrain config lacks: a variant that
    sets one is skipped with that reason instead of failing on Hydra's unknown-key error."""
    if not keys:
        return set()
    from omegaconf import OmegaConf

    from bench.predict import compose_config
    cfg = compose_config("stage=pretrain")
    sentinel = object()
    return {k for k in keys if OmegaConf.select(cfg, k, default=sentinel) is sentinel}


class Budget:
    """The running estimate: each pending run is assumed to take as long as the finished runs most like it."""

    def __init__(self, minutes: float | None):
        self.limit = None if minutes is None else minutes * 60
        self.t0 = time.perf_counter()
        self.done: list[tuple[Job, float]] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def estimate(self, job: Job) -> float:
        for same in (lambda j: j.kind == job.kind and j.bs == job.bs, lambda j: j.bs == job.bs and j.bs is not None,
                     lambda j: j.kind == job.kind, lambda j: True):
            times = [t for j, t in self.done if same(j)]
            if times:
                return sum(times) / len(times)
        return 0.0

    def fits(self, job: Job) -> bool:
        """An optional run fits in the budget; a required one (stock, ours) unless it would end more than
        ``GRACE_SECONDS`` past it: skipped and reported, rather than cut off by the caller's time limit."""
        if self.limit is None:
            return True
        return self.elapsed() + self.estimate(job) <= self.limit + (GRACE_SECONDS if job.required else 0)
