"""The GPU payload's plan, without the network: which wheels, for which platform, and the size checks."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement

from experiments import gpu_payload as gp
from tests.conftest import REPO
from ulmfit.errors import UsageError

MIB = gp.MIB


def test_download_commands_pin_this_environment_for_the_gpu_image(tmp_path):
    cmds = gp.download_commands(tmp_path)
    binary, built = cmds
    assert binary[3:5] == ["download", "--no-deps"] and "--only-binary=:all:" in binary
    assert binary[binary.index("--python-version") + 1] == "3.12"
    assert binary[binary.index("--implementation") + 1] == "cp"
    assert [binary[i + 1] for i, a in enumerate(binary) if a == "--platform"] == list(gp.PLATFORMS)
    specs = {a.split("==")[0]: a.split("==")[1] for cmd in cmds for a in cmd if "==" in a}
    assert specs["fastai"] == importlib.metadata.version("fastai") == "2.8.12"
    assert specs["fastprogress"] == "1.0.3" and specs["antlr4-python3-runtime"] == "4.9.3"
    assert built[3] == "wheel" and any(a.startswith("antlr4-python3-runtime==") for a in built)
    assert not {"spacy", "wandb", "torch", "numpy", "pandas", "scikit-learn", "accelerate", "matplotlib"} & set(specs)


def _closure(names: set[str]) -> set[str]:
    """``names`` and everything they require, as installed here (markers evaluated for this machine, no extras)."""
    seen, todo = set(), [gp.canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for r in map(Requirement, reqs):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(gp.canonical(r.name))
    return seen


IMPORTS = """
import importlib.metadata as md, sys, types
stubs = set()
if md.version("fastprogress") != "1.0.3":  # this environment's newer one imports a web stack the GPU never gets
    stubs = {"fasthtml", "fasthtml.common"}
    sys.modules.update({name: types.ModuleType(name) for name in stubs})
import ulmfit.__main__, ulmfit.stages, ulmfit.data.portable
dists = md.packages_distributions()
print("\\n".join(sorted({d for m in set(sys.modules) - stubs for d in dists.get(m.split(".")[0], [])})))
"""


def test_wheels_cover_what_python_m_ulmfit_imports():
    """Every distribution a fresh `python -m ulmfit` import pulls in is carried or the image's (omegaconf imports
    attrs only if present)."""
    out = subprocess.run([sys.executable, "-c", IMPORTS], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    imported = {gp.canonical(d) for d in out.stdout.split()} - {"ulmfit"}
    carried = {gp.canonical(w.name) for w in gp.WHEELS}
    missing = imported - carried - _closure(set(gp.IMAGE)) - {"attrs"}
    assert not missing, f"imported but neither carried nor in the image: {sorted(missing)}"
    assert "spacy" not in imported and "wandb" not in imported


def _fake_wheel(folder, name: str, requires: list[str]):
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: x\n"
                    + "".join(f"Requires-Dist: {r}\n" for r in requires))
    return path


def test_unmet_requirements_are_reported(tmp_path):
    wheel = _fake_wheel(tmp_path, "fake", ["numpy>=1", "spacy<4", "Some_New.Thing>=2", "fastcore>=1",
                                           "colorama; sys_platform == 'win32'", "pytest; extra == 'dev'",
                                           "tomli; python_version < '3.11'"])
    assert gp.requirements(wheel) == ["numpy", "spacy", "some-new-thing", "fastcore"]
    assert gp.unmet([wheel, _fake_wheel(tmp_path, "fastcore", [])]) == {"some-new-thing": ["fake"]}


def test_size_check_and_the_calls_plan():
    sizes = {".gpu/wheels": 23 * MIB, ".gpu/corpora/imdb.tokens": 29 * MIB,
             ".gpu/corpora/wiki-gutenberg-10m.tokens": 10 * MIB, ".gpu/corpora/wikitext2.tokens": 3 * MIB}
    with pytest.raises(UsageError, match=r"65\.0 MiB, over the 60 MiB limit \(largest: .gpu/corpora/imdb.tokens 29\.0"):
        gp.check_size(sizes, 60)
    assert gp.check_size(sizes, 70) == 65 * MIB
    assert gp.plan_calls(sizes, tree=25 * MIB, call_mib=64) == [
        [".gpu/wheels", ".gpu/corpora/wiki-gutenberg-10m.tokens", ".gpu/corpora/wikitext2.tokens"],
        [".gpu/corpora/imdb.tokens"]]
    assert gp.plan_calls(sizes, tree=0, call_mib=70) == [list(sizes)]
    with pytest.raises(UsageError, match="imdb.tokens .* does not fit"):
        gp.plan_calls(sizes, tree=40 * MIB, call_mib=64)


def test_the_corpora_are_what_the_gpu_recipe_reads(tmp_path):
    names = [c.name for c in gp.corpora(tmp_path, gp.WIKI_TOKENS)]
    assert names == ["imdb", "wiki-gutenberg-5m", "wikitext2"]
    text = (REPO / "conf" / "experiment" / "imdb_gpu.yaml").read_text()
    assert all(f"{n}.tokens" in text for n in names[:2])
