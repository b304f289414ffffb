"""Every step of every recipe, and the config each composes: the experiment YAMLs that chain stages
(``experiment=quickstart`` ...) and the experiment scripts' steps (``experiments/*.py``), each with fixed
arguments. ``tests/fixtures/recipe_configs.json`` records them as composed when they were captured;
``tests/test_recipe_configs.py`` checks that the recipes still compose the same configs.

    python -m tests.recipe_configs        # (re)write the fixture from the recipes as they are now
"""

from __future__ import annotations

import functools
import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

from omegaconf import OmegaConf

from ulmfit import SAMPLE_DIR
from ulmfit.config import compose

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "recipe_configs.json"
ENV = {"ULMFIT_HOME": "/h", "ULMFIT_DATA": "/d", "ULMFIT_TOKENS": "/t"}  # paths the configs resolve against
D = Path("/d")
# experiment -> what its command line adds (the scripts' own: experiments/imdb_gpu.py passes paths.tokens)
PIPELINES = {"quickstart": [], "quickstart_scratch": [], "imdb_gpu": ["paths.tokens=/t"],
             "imdb_paper": ["paths.data=/d"], "imdb_paper_wt103": ["paths.data=/d"]}

Steps = dict[str, tuple[str, str, list[str]]]  # "<recipe>: <stage>/<entry>" -> (stage, entry, its command line)


def pipeline_steps() -> Steps:
    from ulmfit.stages.pipeline import step_overrides
    out = {}
    for experiment, cli in PIPELINES.items():
        for stage, overrides in step_overrides(compose(f"experiment={experiment}", "run_name=r", *cli), cli):
            name = f"r-{stage}"
            out[f"{experiment}: {stage}/{name}"] = (stage, name, overrides)
    return out


class _Metrics(dict):
    """Any metric a script reads after its runs: 1.0."""

    def __missing__(self, key: str) -> float:
        return 1.0


def _recorded(module: Any, argv: list[str], **patches: Any) -> list[tuple[str, str, list[str]]]:
    """The steps ``module.main()`` hands to ``run_step``, with every run and result read faked."""
    calls = []
    fakes = {"run_step": lambda home, stage, name, *o, log=None: calls.append((stage, name, list(o))),
             "entry_metrics": lambda *a: _Metrics(), "append_result": lambda *a, **k: "",
             "entry_lineage": lambda *a: {"precision": "fp32", "parent": {"name": "x"}, "environment": {}},
             "result_rows": lambda *a: [], "hardware": lambda: "h", **patches}
    with ExitStack() as stack:
        for name, fake in fakes.items():
            if hasattr(module, name):
                stack.enter_context(mock.patch.object(module, name, fake))
        stack.enter_context(mock.patch.object(sys, "argv", [module.__name__, *argv]))
        module.main()
    return calls


def _evaluate(*args: str, home: Path, log: Path | None = None) -> float:
    """stage=evaluate's output file, as trec_ensemble reads it."""
    out = Path(dict(a.split("=", 1) for a in args)["stage.output"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text('{"accuracy": 1.0, "error_rate": 0.0, "n": 1}')
    return 1.0


def script_steps(tmp: Path) -> Steps:
    from experiments import (ablations, general_lm, imdb_cpu, imdb_transfer, own_csv, pretraining_ablation,
                             sample_efficiency, trec_cpu, trec_ensemble, wikitext2_cpu)
    trec, imdb, wt2 = D / "trec", D / "imdb", D / "wikitext-2"
    found: dict[str, list[tuple[str, str, list[str]]]] = {
        "trec_cpu": trec_cpu.plan("trec-cpu", "trec-cpu-pretrain", trec, wt2, 42)
        + trec_cpu.plan("trec-glm", "general-lm", trec, wt2, 42),
        "ablations": [s for v in ablations.VARIANTS for s in ablations.plan(v, 42, "wt2-cpu-e3", trec)],
        "imdb_cpu": imdb_cpu.plan(imdb_cpu.TAG, imdb_cpu.PRETRAIN, imdb, wt2, 42),
        "imdb_transfer": [imdb_transfer.lm_step(imdb)] + [
            imdb_transfer.run_plan(m, n, seed, imdb, n_test) for m in imdb_transfer.METHODS
            for n, seed, n_test in ((100, 1, None), (1000, 2, None), (0, 1, None), (100, 3, 5000))],
        "sample_efficiency": [s for m in sample_efficiency.METHODS for n in (100, 1000, 5000, 0)
                              for s in sample_efficiency.plan(m, n, 1, imdb, "wt2-cpu-e3", "imdb-cpu-ft")],
        "pretraining_ablation": [pretraining_ablation.pretrain_step(wt2)] + [
            s for t in pretraining_ablation.TASKS for src in pretraining_ablation.SOURCES
            for s in pretraining_ablation.plan(t, src, trec if t == "trec" else imdb)],
        "general_lm": [s for backwards in ([], ["--backwards"]) for s in _recorded(
            general_lm, ["--home", str(tmp), "--corpus", str(D / "wiki-gutenberg"), *backwards],
            wikitext2_perplexity=lambda *a: _Metrics())],
        "wikitext2_cpu": _recorded(wikitext2_cpu, ["--home", str(tmp), "--wikitext", str(wt2)],
                                   cache_timing=lambda *a: (1.0, 1.0), time=mock.Mock(strftime=lambda f: "T")),
        "own_csv": _recorded(own_csv, ["--home", str(tmp), "--datasets", *own_csv.DATASETS],
                             dataset_files=lambda home, name, shared: (D / name / "train.csv", D / name / "test.csv"))
        + _recorded(own_csv, ["--home", str(tmp), "--datasets", "sentiment_dev", "--tag", "dev-x", "--set",
                              "train.lr=5e-3", "lm.train.epochs=2", "clas.train.bs=16"],
                    dataset_files=lambda home, name, shared: (D / name / "train.csv", D / name / "test.csv")),
        "trec_ensemble": _recorded(trec_ensemble, ["--home", str(tmp), "--trec", str(trec)],
                                   run_ulmfit=_evaluate, write_test_csv=lambda trec, out: out),
    }
    return {f"{recipe}: {stage}/{name}": (stage, name, [f"stage={stage}", f"run_name={name}", *overrides])
            for recipe, steps in found.items() for stage, name, overrides in steps}  # as run_step ran them


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@functools.lru_cache(maxsize=None)  # recipes share steps, and every step is compared with its stage's plain config
def values(*overrides: str) -> dict[str, Any]:
    """The composed config, resolved (paths under ``ENV``; the embedded samples as ``<sample>``), flat."""
    cfg = compose(*overrides)
    with mock.patch.dict(os.environ, ENV):
        resolved = json.dumps(OmegaConf.to_container(cfg, resolve=True))
    return flat(json.loads(resolved.replace(str(SAMPLE_DIR), "<sample>")))


def distinct(stage: str, *overrides: str) -> dict[str, Any]:
    """What a step's config sets differently from a plain ``stage=<stage>`` run."""
    plain, step = values(f"stage={stage}"), values(*overrides)
    return {k: v for k, v in step.items() if plain.get(k, "<absent>") != v}


def main() -> None:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        steps = {**pipeline_steps(), **script_steps(Path(tmp))}
    record = {key: {"stage": stage, "name": name, "overrides": overrides,
                    "values": distinct(stage, *overrides)}
              for key, (stage, name, overrides) in steps.items()}
    FIXTURE.parent.mkdir(exist_ok=True)
    lines = (f"{json.dumps(key)}: {json.dumps(step)}" for key, step in record.items())  # a line a step: readable diffs
    FIXTURE.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"{len(record)} steps -> {FIXTURE} ({FIXTURE.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
