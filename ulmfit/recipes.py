"""Recipes: stages in a row, each step one store entry, run by one runner that continues where a run stopped.

A step is a stage, the name of the entry it writes, and its overrides as a mapping, a key per override as on the
command line (``{"data": "imdb", "train.lr": 0.01}``: a config group's option or a value). Two places build
steps: an experiment YAML run by ``stage=pipeline`` (``python -m ulmfit experiment=quickstart``; its
``stage.steps``, read by ``steps_from_config``) and the experiment scripts (``experiments/*.py``, in Python).
``run_steps`` runs both the same way: a step whose entry exists is reused, one cut short (its checkpoint exists)
continues with ``resume=true``, any other starts; so running the same steps again continues an interrupted run.
Where a step runs is its caller's choice: the pipeline stage runs each in its own process, the scripts each in a
fresh ``python -m ulmfit`` process (memory, allocator and log of its own).

The store is imported where it is used, so that a script's ``--help`` stays light.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from ulmfit.errors import UsageError

ENTRY_STAGE = {"import_wt103": "pretrain"}  # steps whose entry plays another stage's role (a pretrain entry)
PARENT_OF = {"lm_finetune": "pretrain", "classify": "lm_finetune"}
ORDER = ("import_wt103", "pretrain", "lm_finetune", "classify")  # an experiment's steps run in this order, then others


@dataclass(frozen=True)
class Step:
    """``python -m ulmfit stage=<stage> <overrides> run_name=<name>``."""

    stage: str
    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def entry_stage(self) -> str:
        """The stage folder its entry is written to."""
        return ENTRY_STAGE.get(self.stage, self.stage)

    def args(self) -> list[str]:
        """The step's command line (``python -m ulmfit <args>``)."""
        return [f"stage={self.stage}", *as_overrides(self.overrides), f"run_name={self.name}"]


def as_overrides(values: Mapping[str, Any]) -> list[str]:
    """``{"train.lr": 0.01, "data.n_train": None}`` -> ``["train.lr=0.01", "data.n_train=null"]``."""
    def text(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return "[" + ",".join(text(x) for x in v) + "]"
        return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
    return [f"{k}={text(v)}" for k, v in values.items()]


def run_steps(steps: Sequence[Step], store: str | Path,
              execute: Callable[[Step, list[str]], Any]) -> list[float | None]:
    """Run ``steps`` in order, each by ``execute(step, args)`` (``args``: its command line, with ``resume=true``
    added when it was cut short); a step whose entry is in ``store`` (or shipped with the package) is reused, not
    run. Returns each step's wall seconds, None for a reused one."""
    seconds: list[float | None] = []
    for step in steps:
        stage, name = step.entry_stage, step.name
        if finished(store, stage, name):
            print(f"= {stage}/{name} exists, reused", flush=True)
            seconds.append(None)
            continue
        args = step.args()
        if _cut_short(store, step):
            args.append("resume=true")  # an interrupted run of this step: continue it
        t0 = time.perf_counter()
        execute(step, args)
        seconds.append(time.perf_counter() - t0)
    return seconds


def _cut_short(store: str | Path, step: Step) -> bool:
    """Was ``step`` interrupted: has its entry a checkpoint, or with ``direction=both`` (its backward model
    ``<name>-bwd`` runs first, ``ulmfit.directions``) has either direction one, or is the backward one written?"""
    from ulmfit.checkpoint import checkpoint_dir, latest_checkpoint
    from ulmfit.directions import BOTH, backward_name
    stage, names = step.entry_stage, [step.name]
    if step.overrides.get("direction") == BOTH:
        names.append(backward_name(step.name))
        if finished(store, stage, names[-1]):
            return True
    return any(latest_checkpoint(checkpoint_dir(store, stage, name)) is not None for name in names)


def finished(store: str | Path, stage: str, name: str) -> bool:
    """Is there a complete entry ``stage/name`` in ``store``, or an LM of that name shipped with the package?"""
    from ulmfit.store import Store
    entries = Store(store)
    return entries.has(stage, name) or any(e.name == name for e in entries.entries(stage))


def steps_from_config(cfg: DictConfig, command_line: Mapping[str, Any]) -> list[Step]:
    """The steps of an experiment YAML (``stage.steps``: a mapping of overrides per stage, null drops a step), in
    ``ORDER``. Each step's overrides are ``stage.every_step``'s, then its own, then ``command_line`` (what the user
    typed wins). Entries are named ``<run_name>-<stage>``, and each step's parent is the entry of the step before
    it, so the lineage links exactly the entries this recipe wrote."""
    from ulmfit.store import new_run_name
    prefix = cfg.run_name or new_run_name()
    every = _mapping(cfg.stage, "every_step")
    chosen = sorted((s for s, o in cfg.stage.steps.items() if o is not None),
                    key=lambda s: ORDER.index(s) if s in ORDER else len(ORDER))
    steps, names = [], {}
    for stage in chosen:
        names[stage] = names[ENTRY_STAGE.get(stage, stage)] = f"{prefix}-{stage}"
        overrides = {**every, **_mapping(cfg.stage.steps, stage), **command_line}
        parent = PARENT_OF.get(stage)
        if parent in names:
            overrides["stage.parent"] = names[parent]
        elif stage == "classify" and "pretrain" in names:  # no LM fine-tuning: the classifier on the pretrained LM
            overrides.update({"stage.parent_stage": "pretrain", "stage.parent": names["pretrain"]})
        steps.append(Step(stage, names[stage], overrides))
    return steps


def _mapping(node: DictConfig, key: str) -> dict[str, Any]:
    value = OmegaConf.to_container(node, resolve=True)[key]  # ${paths.data} & co. as the recipe's config has them
    if not isinstance(value, dict):
        raise UsageError(f"stage.{'' if key == 'every_step' else 'steps.'}{key} is {value!r}; it must be a "
                         f"mapping of overrides, e.g. {{train.lr: 0.01, data: imdb}} (++stage.steps.<stage>="
                         "{train.lr:0.01} on the command line).")
    return value
