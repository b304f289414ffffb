"""ISA caps (``ulmfit.emulation``): under ``AVX2_ENV`` torch dispatches to AVX2 kernels, sees no CPU bf16, and
every hardware description says EMULATED with the real CPU beside it; without them nothing changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ulmfit.emulation import AVX2_ENV, cpu_flags, isa_caps

PROBE = ("import json, torch; from ulmfit.report import hardware; from ulmfit.hardware import resolve_precision; "
         "print(json.dumps([torch.backends.cpu.get_cpu_capability(), resolve_precision('auto', torch.device('cpu')), "
         "hardware()]))")


def test_isa_caps_are_read_from_the_environment() -> None:
    assert isa_caps({}) == {}
    assert isa_caps({**AVX2_ENV, "PATH": "/bin"}) == AVX2_ENV
    assert isa_caps({"DNNL_MAX_CPU_ISA": "AVX2"}) == {"DNNL_MAX_CPU_ISA": "AVX2"}


@pytest.mark.skipif("avx2" not in cpu_flags(), reason="needs an x86 CPU with AVX2")
def test_avx2_caps_reach_torch_and_the_hardware_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in AVX2_ENV}
    plain = json.loads(subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                                      check=True).stdout)
    capped = json.loads(subprocess.run([sys.executable, "-c", PROBE], env={**env, **AVX2_ENV}, capture_output=True,
                                       text=True, check=True).stdout)
    assert "EMULATED" not in plain[2]
    assert capped[:2] == ["AVX2", "fp32"], capped  # AVX2 kernels; no bf16, so precision=auto trains in fp32
    assert "EMULATED AVX2-only" in capped[2] and "DNNL_MAX_CPU_ISA=AVX2" in capped[2], capped[2]
