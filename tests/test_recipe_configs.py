"""Every recipe composes the configs recorded in tests/fixtures/recipe_configs.json: each step of the experiment
YAMLs that chain stages and of the experiment scripts (tests/recipe_configs.py lists them), compared on what it
sets differently from a plain run of its stage. Composition only: nothing trains."""

from __future__ import annotations

import json

import pytest

from tests.recipe_configs import FIXTURE, distinct, pipeline_steps, script_steps

RECORDED = json.loads(FIXTURE.read_text())
REWRITE = "if the change is intended, rewrite the fixture: python -m tests.recipe_configs"


@pytest.fixture(scope="module")
def steps():
    return {**pipeline_steps(), **script_steps()}


def test_every_recipe_step_is_recorded(steps):
    assert sorted(steps) == sorted(RECORDED), REWRITE


@pytest.mark.parametrize("recipe", sorted({key.split(":")[0] for key in RECORDED}))
def test_recipe_composes_the_recorded_configs(steps, recipe):
    for key in (k for k in RECORDED if k.split(":")[0] == recipe):
        stage, _, args = steps[key]
        now, then = distinct(stage, *args), RECORDED[key]["values"]
        differ = {k: (then.get(k, "<unset>"), now.get(k, "<unset>")) for k in then.keys() | now.keys()
                  if then.get(k, "<unset>") != now.get(k, "<unset>")}
        assert not differ, f"{key} composes differently (key: (recorded, now)): {differ}; {REWRITE}"
