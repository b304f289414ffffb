"""An experiment's steps in a row (pretrain -> lm_finetune -> classify, baselines beside), in this process: the
recipe runner of ``ulmfit.recipes`` behind ``python -m ulmfit experiment=quickstart``, then a table of results.

Each step is composed exactly as ``python -m ulmfit stage=<name> <overrides>`` would compose it, from
``stage.every_step``, its own ``stage.steps.<name>`` and the command line's overrides (``paths.root=...``,
``train.epochs=1``), which apply to every step after the recipe's. Every step's options are checked before the
first one starts. Running it again with the same ``run_name`` continues: finished steps are reused and the one that
was cut short resumes from its checkpoint.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ulmfit.config import compose
from ulmfit.errors import UsageError
from ulmfit.recipes import Step, run_steps, steps_from_config
from ulmfit.schema import validate
from ulmfit.store import Entry, Store

log = logging.getLogger(__name__)
STAGE = "pipeline"


def _selects_recipe(key: str) -> bool:
    """An override of the recipe itself, not of its steps' options (resume: the runner decides it per step)."""
    bare = key.lstrip("+~")
    return bare in ("stage", "experiment", "run_name", "resume") or bare.startswith(("stage.steps", "stage.every_step"))


def command_line() -> dict[str, str]:
    """The user's command-line overrides, minus those that select the recipe, as a mapping."""
    if not HydraConfig.initialized():
        return {}
    overrides = {}
    for o in HydraConfig.get().overrides.task:
        key, sep, value = o.partition("=")
        if _selects_recipe(key):
            continue
        if not sep:
            raise UsageError(f"{o}: stage=pipeline passes key=value overrides to its steps; set the value instead "
                             f"(e.g. {key.lstrip('~')}=null).")
        overrides[key] = value
    return overrides


def run(cfg: DictConfig, stages: Mapping[str, Any]) -> list[Entry]:
    """Run the steps; ``stages``: the registry of ``ulmfit.stages`` (passed in: it lists this stage too)."""
    if unknown := [s for s, o in cfg.stage.steps.items() if o is not None and (s not in stages or s == STAGE)]:
        raise UsageError(f"stage.steps has {unknown[0]!r}; steps must be among "
                         f"{', '.join(s for s in stages if s != STAGE)}.")
    t0 = time.perf_counter()
    steps = steps_from_config(cfg, command_line())
    configs = {step.name: compose(*step.args()) for step in steps}
    for step_cfg in configs.values():  # every step's options, before the first one starts
        validate(step_cfg)
    entries: dict[str, Entry] = {}

    def execute(step: Step, args: list[str]) -> None:
        log.info("pipeline step %s: %s", step.stage, " ".join(args))
        entries[step.name] = stages[step.stage].run(configs[step.name] if args == step.args() else compose(*args))

    seconds = run_steps(steps, Path(cfg.paths.store), execute)
    store = Store(cfg.paths.store)
    done = [entries.get(step.name) or store.get(step.entry_stage, step.name) for step in steps]  # reused: the store's
    _print_summary([_summary_row(e, s or 0.0, stages) for e, s in zip(done, seconds)], time.perf_counter() - t0)
    return done


def _summary_row(entry: Entry, seconds: float, stages: Mapping[str, Any]) -> dict[str, Any]:
    metrics, stage = entry.metrics, stages[entry.stage]
    return {"entry": entry.ref, "role": stage.role or entry.stage, "seconds": seconds,
            "metrics": {k: metrics[k] for k in stage.summary if k in metrics}}


def _print_summary(rows: list[dict[str, Any]], total: float) -> None:
    print(f"\n== pipeline results ({total / 60:.1f} min)")
    width, role_width = max(len(r["entry"]) for r in rows), max(len(r["role"]) for r in rows)
    for r in rows:
        values = "  ".join(f"{k} {v:.4g}" for k, v in r["metrics"].items())
        print(f"  {r['role']:<{role_width}}  {r['entry']:<{width}}  {r['seconds']:6.0f}s  {values}")
