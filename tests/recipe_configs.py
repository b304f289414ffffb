"""Every step of every recipe, and the config each composes: the experiment YAMLs that chain stages
(``experiment=quickstart`` ...) and the experiment scripts' steps (``experiments/*.py``), each with fixed
arguments. ``tests/fixtures/recipe_configs.json`` records them as composed when they were captured;
``tests/test_recipe_configs.py`` checks that the recipes still compose the same configs.

    python -m tests.recipe_configs        # (re)write the fixture from the recipes as they are now
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

from omegaconf import OmegaConf

from ulmfit import SAMPLE_DIR
from ulmfit.config import compose
from ulmfit.recipes import Step, steps_from_config

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "recipe_configs.json"
ENV = {"ULMFIT_HOME": "/h", "ULMFIT_DATA": "/d", "ULMFIT_TOKENS": "/t"}  # paths the configs resolve against
D = Path("/d")
# experiment -> what its command line adds (the scripts' own: experiments/imdb_gpu.py passes paths.tokens)
PIPELINES = {"quickstart": [], "quickstart_scratch": [], "imdb_gpu": ["paths.tokens=/t"],
             "imdb_paper": ["paths.data=/d"], "imdb_paper_wt103": ["paths.data=/d"]}

Steps = dict[str, tuple[str, str, list[str]]]  # "<recipe>: <stage>/<entry>" -> (stage, entry, its command line)


def pipeline_steps() -> Steps:
    out = {}
    for experiment, cli in PIPELINES.items():
        recipe = compose(f"experiment={experiment}", "run_name=r", *cli)
        for step in steps_from_config(recipe, dict(o.split("=", 1) for o in cli)):
            out[f"{experiment}: {step.stage}/{step.name}"] = (step.stage, step.name, step.args())
    return out


def script_steps() -> Steps:
    from experiments import (ablations, general_lm, imdb_cpu, imdb_transfer, own_csv, pretraining_ablation,
                             pretraining_budget, quickstart_length, sample_efficiency, subword, tasks, trec_cpu,
                             trec_ensemble, wikitext2_cpu)
    from experiments.common import backward_step
    trec, imdb, wt2 = D / "trec", D / "imdb", D / "wikitext-2"
    csv = {name: (D / name / "train.csv", D / name / "test.csv") for name in own_csv.DATASETS}
    own = [own_csv.plan(name, "csv", None, list(own_csv.METHODS), [], *csv[name]) for name in own_csv.DATASETS]
    own.append(own_csv.plan("sentiment_dev", "dev-x", None, list(own_csv.METHODS),
                            ["train.lr=5e-3", "lm.train.epochs=2", "clas.train.bs=16"], *csv["sentiment_dev"]))
    # own_csv --direction both (one dataset): the backward LM from the backward model of the forward LM's parent
    # (read from the store as the script runs; general-lm where only the shipped LMs are there), and the classifier's
    ag_lm, ag_runs = own[0]
    own_bwd = [backward_step(replace(ag_lm, overrides={**ag_lm.overrides, "stage.parent": "general-lm"})),
               backward_step(ag_runs["ulmfit"])]
    # experiments.subword's defaults (its argparse)
    sub = argparse.Namespace(seed=42, precision="auto", sp_vocab=None, wikitext=wt2, trec=trec, lm_tokens=1_200_000,
                             epochs=1, lr=3e-3, imdb=imdb, imdb_lm_tokens=3_000_000)
    # pretraining_budget's downstream steps name the sentiment_dev CSVs it builds in its home: fixed paths here
    with mock.patch.object(own_csv, "dataset_files", lambda home, name, shared: csv[name]):
        budget = [pretraining_budget.second_pass(D / "wiki-gutenberg")] + [
            s for lm in (pretraining_budget.SHIPPED, pretraining_budget.SECOND_PASS)
            for s in pretraining_budget.downstream(lm, D, Path("/h")).values()]
    found: dict[str, list[Step]] = {
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
        "general_lm": [general_lm.step(D / "wiki-gutenberg", backwards) for backwards in (False, True)],
        "wikitext2_cpu": [wikitext2_cpu.step("wt2-cpu-T", wt2)],
        "own_csv": [s for lm, runs in own for s in (lm, *runs.values())] + own_bwd,
        "trec_ensemble": trec_ensemble.plan([42, 43, 44], trec)
        + [backward_step(s) for s in trec_ensemble.plan([42, 43, 44], trec)],  # --direction both
        "quickstart_length": quickstart_length.plan(quickstart_length.RECIPES.split(","), "qlen")
        + list(quickstart_length.timing_steps("qlen", "qlen-lm10").values()),
        "tasks": [s for d in tasks.TASKS for lm, runs in [tasks.plan(d, "tasks", list(tasks.METHODS), (
            D / d / "train.csv", D / d / "test.csv"), (D / "lm" / "train.csv", D / "lm" / "test.csv"))]
                  for s in ([lm] if lm else []) + list(runs.values())],
        "subword": [s for tokenizer in subword.TOKENIZERS for s in subword.steps("subword", tokenizer, sub)]
        + [s for tokenizer in subword.TOKENIZERS for s in subword.imdb_steps("subword", tokenizer, sub)],
        "pretraining_budget": budget,
    }
    return {f"{recipe}: {s.stage}/{s.name}": (s.stage, s.name, s.args())
            for recipe, steps in found.items() for s in steps}


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
    steps = {**pipeline_steps(), **script_steps()}
    record = {key: {"stage": stage, "name": name, "overrides": overrides,
                    "values": distinct(stage, *overrides)}
              for key, (stage, name, overrides) in steps.items()}
    FIXTURE.parent.mkdir(exist_ok=True)
    lines = (f"{json.dumps(key)}: {json.dumps(step)}" for key, step in record.items())  # a line a step: readable diffs
    FIXTURE.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"{len(record)} steps -> {FIXTURE} ({FIXTURE.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
