"""The block-wise LM loss equals fastai's CrossEntropyLossFlat in value and gradient, for fp32 and bf16 logits."""

from __future__ import annotations

import pytest
import torch
from fastai.losses import CrossEntropyLossFlat

import ulmfit.losses as losses
from ulmfit.losses import BlockwiseCrossEntropyLossFlat


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_value_and_gradient_match_fastai(dtype, tol, monkeypatch):
    monkeypatch.setattr(losses, "ROWS_PER_BLOCK", 7)  # several blocks, the last one partial
    torch.manual_seed(0)
    logits = (3 * torch.randn(4, 9, 50)).to(dtype)
    target = torch.randint(0, 50, (4, 9))
    ours_in = logits.clone().requires_grad_()
    ref_in = logits.clone().float().requires_grad_()
    ours = BlockwiseCrossEntropyLossFlat()(ours_in, target)
    ref = CrossEntropyLossFlat()(ref_in, target)
    ours.backward()
    ref.backward()
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, ref, atol=1e-5)  # the value is computed in fp32 from the same logits
    assert ours_in.grad.dtype == dtype
    assert torch.allclose(ours_in.grad.float(), ref_in.grad, atol=tol * ref_in.grad.abs().max())


def test_other_reductions_fall_back_to_fastai():
    loss = BlockwiseCrossEntropyLossFlat()
    logits, target = torch.randn(2, 3, 5), torch.randint(0, 5, (2, 3))
    loss.func.reduction = "none"  # what fastai's get_preds(with_loss=True) does
    per_item = loss(logits, target)
    assert per_item.shape == (6,)
    assert torch.allclose(per_item, CrossEntropyLossFlat(reduction="none")(logits, target))
    assert torch.equal(loss.decodes(logits), logits.argmax(-1))
