"""What the experiment scripts share: running their steps (``run_recipe``: ``ulmfit.recipes``' runner, each step
in a fresh ``python -m ulmfit`` process) and other commands (``run_module`` and ``run_ulmfit`` are
``ulmfit.processes``', which the benchmarks use too), the recipes in conf/experiment/, the store entries a run
wrote, the results tables, and the machine's description (``hardware``, from ``ulmfit.report``).

The ulmfit modules that pull in torch/fastai are imported where they are used, so that ``--help`` and the
benchmarks' parent process stay light.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from ulmfit.config import CONF_DIR
from ulmfit.directions import BACKWARD, backward_name
from ulmfit.processes import run_module, run_ulmfit
from ulmfit.recipes import Step, as_overrides, finished, run_steps
from ulmfit.report import hardware

__all__ = ["REPO", "RESULTS", "SHARED_DATA", "Step", "append_result", "as_overrides", "csv_dataset", "backward_step",
           "entry_config", "entry_lineage", "entry_metrics", "entry_parent", "experiment_parser", "hardware",
           "has_entry", "recipe", "recipe_text", "result_rows", "run_module", "run_recipe", "run_ulmfit", "stamp"]

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"
SHARED_DATA = REPO.parent / "shared" / "data"  # ../shared/data next to the checkout, wherever the script runs from


# --------------------------------------------------------------------------------------------- subprocesses
def run_recipe(home: Path, steps: Sequence[Step], log: Path | None = None,
               env: dict[str, str] | None = None) -> list[float | None]:
    """``steps`` in order, each ``python -m ulmfit <its command line>`` in a fresh process with ULMFIT_HOME=home
    and ``env`` added to its environment (e.g. ``ulmfit.emulation.AVX2_ENV``) (``ulmfit.recipes.run_steps``: a
    step whose entry exists is reused, an interrupted one continues); each step's wall seconds, None for a reused
    one."""
    return run_steps(steps, home / "store", lambda step, args: run_ulmfit(*args, home=home, log=log, env=env))


def backward_step(step: Step) -> Step:
    """The backward model beside forward ``step``: the same overrides with ``direction=backward``, its entry
    ``<name>-bwd`` and, where ``step`` names its parent, that parent's backward model (``ulmfit.directions``)."""
    overrides = {**step.overrides, "direction": BACKWARD}
    if overrides.get("stage.parent") not in (None, "none"):
        overrides["stage.parent"] = backward_name(overrides["stage.parent"])
    return Step(step.stage, backward_name(step.name), overrides)


# --------------------------------------------------------------------------------------------- recipes
def recipe(name: str) -> dict[str, Any]:
    """The values ``conf/experiment/<name>.yaml`` sets, flat (``{"train.lr": 0.01, ...}``), after those of the
    experiments it extends; its group choices (``override /data: imdb``) and run name are not included."""
    cfg = OmegaConf.load(CONF_DIR / "experiment" / f"{name}.yaml")
    values: dict[str, Any] = {}
    for parent in cfg.get("defaults", []):
        if isinstance(parent, str) and parent != "_self_":  # another experiment this one extends
            values.update(recipe(parent))
    body = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k not in ("defaults", "run_name")}
    values.update(_flat(body))
    return values


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def recipe_text(name: str) -> str:
    """``experiment=<name>`` and the values it sets, for a results description."""
    return f"`experiment={name}` ({' '.join(as_overrides(recipe(name)))})"


# --------------------------------------------------------------------------------------------- store entries
def has_entry(home: Path, stage: str, name: str) -> bool:
    """A complete store entry (lineage.json is written last), or an LM shipped with the package (``general-lm``)."""
    return finished(home / "store", stage, name)


def entry_metrics(home: Path, stage: str, name: str) -> dict[str, Any]:
    from ulmfit.store import Store
    return Store(home / "store").get(stage, name).metrics


def entry_config(home: Path, stage: str, name: str) -> DictConfig:
    """The resolved config a store entry was trained with."""
    from ulmfit.store import Store
    return Store(home / "store").get(stage, name).config()


def entry_lineage(home: Path, stage: str, name: str) -> dict[str, Any]:
    from ulmfit.store import Store
    return Store(home / "store").get(stage, name).lineage


def entry_parent(home: Path, stage: str, name: str) -> str:
    """The name of the entry this one started from (its lineage), or "" for none."""
    return (entry_lineage(home, stage, name).get("parent") or {}).get("name", "")


# --------------------------------------------------------------------------------------------- scripts, results
def experiment_parser(doc: str, dataset: str, tag: str, pretrain: str | None = None) -> argparse.ArgumentParser:
    """The options every pretrain -> fine-tune -> classify script shares."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs"), help="ULMFIT_HOME: store + token cache")
    ap.add_argument(f"--{dataset}", default=str(SHARED_DATA / dataset))
    ap.add_argument("--wikitext", default=str(SHARED_DATA / "wikitext-2"))
    ap.add_argument("--pretrain", default=pretrain, help="the WikiText-2 pretrain entry to start from, trained "
                    f"first if the store has none of that name (default: {pretrain or '<tag>-pretrain'})")
    ap.add_argument("--tag", default=tag, help="prefix of the entries this run writes (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=42)
    return ap


def csv_dataset(home: Path, name: str, shared: Path, build: Callable[[Path, Path], None]) -> tuple[Path, Path]:
    """``<home>/csv/<name>/{train,test}.csv``, written once by ``build(shared, out)`` (a rerun reuses them, so every
    method of a resumed study reads the same rows); the paths of the two files."""
    out = home / "csv" / name
    if not (out / "test.csv").exists():
        out.mkdir(parents=True, exist_ok=True)
        build(shared, out)
    return out / "train.csv", out / "test.csv"


def stamp() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M")


def result_rows(name: str) -> list[dict[str, str]]:
    """The rows of results/<name>.csv so far (none before the first): what a resumable study has finished."""
    path = RESULTS / f"{name}.csv"
    if not path.exists():
        return []
    with open(path) as fh:
        return list(csv.DictReader(fh))


def append_result(name: str, row: dict[str, Any], title: str, description: str, key: str | None = None) -> str:
    """Add ``row`` to results/<name>.csv and rewrite results/<name>.md as a table of every row so far.

    With ``key``, an earlier row with the same value in that column is replaced (a rerun refreshes its row
    instead of repeating it). A row with new columns widens the table; older rows leave them empty.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.csv"
    rows = result_rows(name)
    if key is not None:
        rows = [r for r in rows if r.get(key) != str(row[key])]
    rows.append({k: str(v) for k, v in row.items()})
    columns = list(dict.fromkeys(c for r in rows for c in r))
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    md = "\n".join([f"# {title}", "", description, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
                    *["| " + " | ".join(r.get(c, "") for c in columns) + " |" for r in rows]]) + "\n"
    (RESULTS / f"{name}.md").write_text(md)
    return md
