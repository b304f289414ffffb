"""``train.precision``: what each value resolves to on CPU, and a clear refusal where it cannot run."""

from __future__ import annotations

import pytest
import torch

import ulmfit.hardware as hardware_mod
from ulmfit import UsageError
from ulmfit.hardware import cpu_has_bf16_instructions, cpu_runs_bf16, resolve_precision

CPU = torch.device("cpu")


def test_cpu_values_resolve_or_fail_with_the_fix():
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("auto", CPU) == ("bf16" if cpu_has_bf16_instructions() else "fp32")
    with pytest.raises(UsageError, match="needs a CUDA GPU"):
        resolve_precision("fp16", CPU)
    with pytest.raises(UsageError, match="is unknown; use one of auto, fp32, bf16, fp16"):
        resolve_precision("half", CPU)


@pytest.mark.parametrize("runs, fast", [(False, False), (True, False), (True, True)])
def test_bf16_on_cpu_follows_what_the_cpu_can_do(runs, fast, monkeypatch):
    """No AVX-512: refused (PyTorch's LSTM would fail at the first batch); AVX-512 without bf16 instructions:
    allowed when asked for, but auto keeps fp32; AVX512-BF16/AMX: auto picks bf16."""
    monkeypatch.setattr(hardware_mod, "cpu_runs_bf16", lambda: runs)
    monkeypatch.setattr(hardware_mod, "cpu_has_bf16_instructions", lambda: fast)
    assert resolve_precision("auto", CPU) == ("bf16" if fast else "fp32")
    if runs:
        assert resolve_precision("bf16", CPU) == "bf16"
    else:
        with pytest.raises(UsageError, match="Use train.precision=fp32, or train.precision=auto"):
            resolve_precision("bf16", CPU)


@pytest.mark.skipif(not cpu_runs_bf16(), reason="this CPU has no bf16 LSTM in oneDNN (needs AVX-512)")
def test_the_lstm_runs_under_bf16_autocast_where_bf16_is_allowed():
    lstm = torch.nn.LSTM(8, 16, batch_first=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = lstm(torch.randn(2, 5, 8))
    assert torch.isfinite(out.float()).all()


@pytest.mark.skipif(cpu_runs_bf16(), reason="this CPU runs bf16 LSTMs")
def test_the_refusal_matches_what_pytorch_does_here():
    """Where bf16 is refused, PyTorch's LSTM indeed cannot run under bf16 autocast."""
    lstm = torch.nn.LSTM(8, 16, batch_first=True)
    with pytest.raises(RuntimeError, match="primitive descriptor"), torch.autocast("cpu", dtype=torch.bfloat16):
        lstm(torch.randn(2, 5, 8))
