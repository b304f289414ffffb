"""The walkthrough notebook runs top to bottom on the embedded sample (as a user would run it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("ULMFIT_HOME", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "test accuracy" in outputs and "classify/nb-classify <- lm_finetune/nb-finetune <- pretrain/nb-pretrain" in outputs
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert (tmp_path / "store" / "classify" / "nb-classify" / "lineage.json").is_file()
    assert os.environ["ULMFIT_HOME"] == str(tmp_path)
