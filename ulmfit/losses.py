"""The language-model loss: fastai's ``CrossEntropyLossFlat``, computed without full-size fp32 copies of the logits.

With a 16k-60k vocabulary the decoder's logits are by far the largest tensor of a step (bs x bptt x vocab,
~290 MB in fp32 for bs 64, bptt 70, 16k words). The stock path converts them to fp32, writes fp32
log-probabilities, zero-fills a same-size gradient for NLL, and makes two more passes in backward: memory
traffic that is a large share of a CPU training step (``bench/`` measures it). Here the same value and gradient are
computed a block of rows at a time, in fp32, from logits of any dtype: forward keeps one loss per row;
backward recomputes the block's softmax and writes ``softmax - onehot`` into a gradient of the logits' dtype.
"""

from __future__ import annotations

import torch
from fastai.losses import CrossEntropyLossFlat

ROWS_PER_BLOCK = 128  # small enough to bound the extra memory (128 x 60k fp32 = 30 MB), large enough to amortise
                      # the per-block overhead


class _BlockwiseCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``logits`` (N, V) against ``target`` (N,), fp32 math, O(block) extra memory."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n = logits.shape[0]
        nll = torch.empty(n, dtype=torch.float32, device=logits.device)
        for s in range(0, n, ROWS_PER_BLOCK):
            logp = torch.log_softmax(logits[s:s + ROWS_PER_BLOCK], dim=-1, dtype=torch.float32)
            nll[s:s + ROWS_PER_BLOCK] = -logp.gather(1, target[s:s + ROWS_PER_BLOCK, None]).squeeze(1)
        ctx.save_for_backward(logits, target)
        return nll.mean()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, target = ctx.saved_tensors
        n = logits.shape[0]
        scale = grad_out.float() / n
        grad = torch.empty_like(logits)
        for s in range(0, n, ROWS_PER_BLOCK):
            e = min(n, s + ROWS_PER_BLOCK)
            p = torch.softmax(logits[s:e], dim=-1, dtype=torch.float32)  # recomputed: cheaper than storing
            p[torch.arange(e - s, device=p.device), target[s:e]] -= 1.0
            grad[s:e] = p.mul_(scale)
        return grad, None


class BlockwiseCrossEntropyLossFlat(CrossEntropyLossFlat):
    """``CrossEntropyLossFlat`` (same flattening, activation and decoding for fastai) whose mean reduction runs
    block by block; other reductions (``get_preds``' per-item losses) and options fall back to fastai's."""

    accepts_low_precision = True  # CpuBf16Autocast hands it bf16 logits

    def __call__(self, inp: torch.Tensor, targ: torch.Tensor, **kwargs) -> torch.Tensor:
        plain = (self.func.reduction == "mean" and self.func.weight is None and self.func.ignore_index < 0
                 and not getattr(self.func, "label_smoothing", 0.0) and self.axis == -1 and not kwargs)
        if not plain:
            return super().__call__(inp.float(), targ, **kwargs)
        return _BlockwiseCrossEntropy.apply(inp.reshape(-1, inp.shape[-1]), targ.reshape(-1).long())
