"""Every config group option composes; the CLI answers --help, --cfg job and -m."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from ulmfit.config import CONF_DIR
from tests.conftest import TINY, run_cli

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir())
# Options with a mandatory path need one to resolve; any existing folder will do for composition.
NEEDS = {"wikitext2": ["data.root=."], "trec": ["data.root=."], "csv": ["data.files.train=x.csv"]}


def test_groups_are_the_documented_concerns():
    assert set(GROUPS) >= {"stage", "data", "model", "train", "logger", "paths", "experiment"}


@pytest.mark.parametrize("group,option", [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))])
def test_every_option_composes_and_resolves(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}", *NEEDS.get(option, []))
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert container["stage"]["name"]
    assert container["model"]["arch"] == "awd_lstm"
    if group == "data":
        assert cfg.data.format in ("wikitext", "imdb", "trec", "csv")


def test_stage_picks_its_data_but_command_line_wins(make_cfg):
    assert make_cfg("stage=pretrain").data.format == "wikitext"
    assert make_cfg("stage=pretrain", "data=trec", "data.root=.").data.format == "trec"


def test_sample_resolver_points_into_the_package(make_cfg):
    from ulmfit import SAMPLE_DIR
    assert make_cfg().data.root == str(SAMPLE_DIR / "wikitext-2")


def test_paper_model_sizes(make_cfg):
    m = make_cfg("model=awd_lstm").model
    assert (m.emb_sz, m.n_hid, m.n_layers) == (400, 1152, 3)
    assert (m.output_p, m.hidden_p, m.input_p, m.embed_p, m.weight_p) == (0.4, 0.3, 0.4, 0.05, 0.5)


def test_cli_help_and_cfg_job(tmp_path):
    out = run_cli("stage=pretrain", "model=awd_lstm_tiny", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "emb_sz: 48" in out.stdout and "name: pretrain" in out.stdout


def test_cli_typo_fails_with_a_message(tmp_path):
    out = run_cli("trian.lr=1", cwd=tmp_path)
    assert out.returncode == 2 and "trian" in out.stderr


def test_multirun_gives_each_job_its_own_entry(tmp_path, mini_wikitext):
    out = run_cli("-m", "stage=pretrain", "data=wikitext2", f"data.root={mini_wikitext}", *TINY,
                  "train.lr=1e-3,3e-3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    entries = sorted(p.name for p in (tmp_path / "store" / "pretrain").iterdir())
    assert len(entries) == 2 and len(set(entries)) == 2
    assert [e.split("-", 2)[2].endswith(lr) for e, lr in zip(entries, ("train.lr=0.001", "train.lr=0.003"))] == [True] * 2
    # the compare view: what differs between the jobs (train.lr) beside their metrics, best first
    store = sys.executable, "-m", "ulmfit.store", "--root", str(tmp_path / "store")
    out = subprocess.run([*store, "--compare", "pretrain", "--match", "train.lr=", "--sort", "valid_loss"],
                         capture_output=True, text=True)  # the sweep's jobs, not the shipped LM
    assert out.returncode == 0, out.stderr
    header, rows = out.stdout.splitlines()[0].split(), [r.split() for r in out.stdout.splitlines() if "train.lr=" in r]
    assert header[:2] == ["train.lr", "valid_loss"] and len(rows) == 2  # only what differs, then the metrics
    assert "data.root" not in out.stdout and "seed" not in out.stdout
    losses = [float(r[2]) for r in rows]  # columns: entry, train.lr, valid_loss, ...
    assert losses == sorted(losses)
    bad = subprocess.run([*store, "--compare", "pretrain", "--sort", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a column" in bad.stderr


def test_paper_recipe_from_fastai_wt103_weights_wires_the_import_as_pretrain(make_cfg):
    from ulmfit.recipes import steps_from_config
    cfg = make_cfg("experiment=imdb_paper_wt103", "paths.data=/datasets", "run_name=p")
    steps = steps_from_config(cfg, {"train.precision": "fp32"})
    assert [(s.stage, s.entry_stage, s.name) for s in steps] == [
        ("import_wt103", "pretrain", "p-import_wt103"), ("lm_finetune", "lm_finetune", "p-lm_finetune"),
        ("classify", "classify", "p-classify")]
    imp, ft, clas = (s.overrides for s in steps)
    assert imp["stage.dir"] == "/datasets/wt103-fwd" and cfg.stage.steps.pretrain is None
    assert ft["stage.parent"] == "p-import_wt103" and clas["stage.parent"] == "p-lm_finetune"
    # stage.every_step of the inherited imdb_paper recipe reaches every step; the command line wins over it
    assert all(o["model"] == "awd_lstm" and o["train.precision"] == "fp32" for o in (imp, ft, clas))


@pytest.mark.parametrize("override,fragment", [
    ("train.epochs=-1", "whole number >= 0"), ("train.bs=0", "positive whole number"), ("train.lr=0", "positive number"),
    ("train.device=gpu", "auto, cpu, cuda"), ("train.clip=-1", "positive number or null"),
    ("train.optimizer.beta1=1", "in [0, 1)"), ("train.stlr.cut_frac=0", "in (0, 1]"), ("seed=true", "whole number"),
    ("train.checkpoint_minutes=-5", "number >= 0 or null"), ("data.max_vocab=1e4", "positive whole number"),
    ("train.gradual_unfreezing=maybe", "true or false"), ("stage.parent_stage=wt103", "lm_finetune, pretrain, none"),
])
def test_option_values_are_checked_before_any_work(make_cfg, override, fragment):
    from ulmfit.errors import UsageError
    from ulmfit.schema import validate
    key = override.split("=")[0]
    with pytest.raises(UsageError, match=re.escape(fragment)) as e:
        validate(make_cfg("stage=classify", override))
    assert str(e.value).startswith(f"{key}=") and "e.g." in str(e.value) and "\n" not in str(e.value)


def test_every_shipped_config_passes_the_checks(make_cfg):
    from ulmfit.schema import validate
    for stage in ("pretrain", "lm_finetune", "classify", "predict", "evaluate", "tfidf", "nbsvm", "pipeline"):
        validate(make_cfg(f"stage={stage}"))
    for experiment in sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")):
        validate(make_cfg(f"experiment={experiment}", *NEEDS.get(experiment, [])))


def test_help_lists_stages_experiments_groups_and_examples(tmp_path):
    out = run_cli("--help", cwd=tmp_path)
    assert out.returncode == 0 and "powered by Hydra" not in out.stdout
    for name in ("pretrain", "lm_finetune", "classify", "quickstart", "imdb_paper", "awd_lstm_cpu", "wandb", "trec"):
        assert f"  {name} " in out.stdout, name
    assert "examples:" in out.stdout and "python -m ulmfit -m stage=lm_finetune" in out.stdout
    described = [line for line in out.stdout.splitlines() if line.startswith("  ") and not line.startswith("  python")]
    assert all(len(line.split(None, 1)) == 2 for line in described), "every option has a one-line description"
