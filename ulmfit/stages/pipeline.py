"""Several stages in a row (pretrain -> lm_finetune -> classify), each composed exactly as
``python -m ulmfit stage=<name> <overrides>`` would compose it, linked through the store by run name.

Each step starts from ``stage.every_step`` (an experiment's choices for all steps, kept when a user replaces one
step's list), then its own overrides in ``stage.steps``; the command line's own overrides (e.g.
``paths.root=...``, ``train.epochs=1``) are applied to every step after them. Entries are named ``<run_name>-<stage>`` and every step names
its parent explicitly, so the lineage links exactly the entries this pipeline wrote.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from hydra import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ulmfit.errors import UsageError
from ulmfit.schema import validate
from ulmfit.checkpoint import checkpoint_dir, latest_checkpoint
from ulmfit.store import Entry, Store, new_run_name

log = logging.getLogger(__name__)
STAGE = "pipeline"
PARENT_OF = {"lm_finetune": "pretrain", "classify": "lm_finetune"}
PROVIDES = {"import_wt103": "pretrain"}  # steps whose entry plays another stage's role (it is a pretrain entry)
ORDER = ("import_wt103", "pretrain", "lm_finetune", "classify")  # steps run in this order, then any others


def _inherited_overrides() -> list[str]:
    """The user's command-line overrides, minus those that select the pipeline itself."""
    if not HydraConfig.initialized():
        return []
    skip = ("stage=", "stage.steps", "stage.every_step", "experiment=", "run_name=", "+experiment=", "resume=")  # resume: per step
    return [o for o in HydraConfig.get().overrides.task if not o.startswith(skip)]


def step_overrides(cfg: DictConfig, inherited: list[str]) -> list[tuple[str, list[str]]]:
    """(stage, overrides) for every step, parents wired by name."""
    prefix = cfg.run_name or new_run_name()
    steps, names = [], {}
    chosen = [(s, e) for s, e in cfg.stage.steps.items() if e is not None]  # a step set to null is dropped
    chosen.sort(key=lambda se: ORDER.index(se[0]) if se[0] in ORDER else len(ORDER))
    for stage, extra in chosen:
        names[stage] = names[PROVIDES.get(stage, stage)] = f"{prefix}-{stage}"
        # the command line comes after the step's own overrides, so what the user types wins
        overrides = [f"stage={stage}", *cfg.stage.every_step, *(extra or []), *inherited, f"run_name={names[stage]}"]
        parent = PARENT_OF.get(stage)
        if parent in names:
            overrides.append(f"stage.parent={names[parent]}")
        if stage == "classify" and parent not in names and "pretrain" in names:
            overrides += ["stage.parent_stage=pretrain", f"stage.parent={names['pretrain']}"]
        steps.append((stage, overrides))
    return steps


def run(cfg: DictConfig, stages: Mapping[str, Any]) -> list[Entry]:
    """Run the steps; ``stages``: the registry of ``ulmfit.stages`` (passed in: it lists this stage too)."""
    if unknown := [s for s, e in cfg.stage.steps.items() if e is not None and (s not in stages or s == STAGE)]:
        raise UsageError(f"stage.steps has {unknown[0]!r}; steps must be among "
                         f"{', '.join(s for s in stages if s != STAGE)}.")
    entries, rows, t0 = [], [], time.perf_counter()
    steps = [(stage, overrides, compose(config_name="config", overrides=overrides))
             for stage, overrides in step_overrides(cfg, _inherited_overrides())]
    for _, _, step_cfg in steps:  # every step's options, before the first one starts
        validate(step_cfg)
    for stage, overrides, step_cfg in steps:
        t = time.perf_counter()
        if cfg.resume:  # continue an interrupted pipeline: reuse finished steps, resume the cut one
            done, interrupted = _step_state(step_cfg, PROVIDES.get(stage, stage))
            if done is not None:
                log.info("pipeline step %s: %s exists, reused (resume=true)", stage, done.ref)
                entries.append(done)
                rows.append(_summary_row(done, 0.0, stages))
                continue
            if interrupted:
                step_cfg = compose(config_name="config", overrides=[*overrides, "resume=true"])
        log.info("pipeline step %s: %s", stage, " ".join(overrides))
        entry = stages[stage].run(step_cfg)
        entries.append(entry)
        rows.append(_summary_row(entry, time.perf_counter() - t, stages))
    _print_summary(rows, time.perf_counter() - t0)
    return entries


def _step_state(step_cfg: DictConfig, entry_stage: str) -> tuple[Entry | None, bool]:
    """(the step's finished entry or None, whether it has an interrupted run's checkpoint)."""
    store, name = Store(step_cfg.paths.store), step_cfg.run_name
    if store.has(entry_stage, name):
        return store.get(entry_stage, name), False
    return None, latest_checkpoint(checkpoint_dir(store.root, entry_stage, name)) is not None


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
