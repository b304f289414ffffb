"""The experiment scripts: the recipes they run (conf/experiment/), the results tables they write
(experiments/common.py), and that they run as ``python -m experiments.<script>``."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments import common, imdb_cpu, imdb_transfer, pretraining_ablation, sample_efficiency, trec_cpu
from ulmfit.config import compose
from ulmfit.recipes import Step, steps_from_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    return tmp_path


def read(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_rerun_replaces_its_row_and_new_columns_widen_the_table(results):
    common.append_result("t", {"tag": "a", "acc": 0.8}, "T", "d", key="tag")
    common.append_result("t", {"tag": "b", "acc": 0.7}, "T", "d", key="tag")
    md = common.append_result("t", {"tag": "a", "acc": 0.9, "lm_lr": 0.01}, "T", "d", key="tag")

    rows = read(results / "t.csv")
    assert [(r["tag"], r["acc"], r["lm_lr"]) for r in rows] == [("b", "0.7", ""), ("a", "0.9", "0.01")]
    assert md == (results / "t.md").read_text()
    assert "| tag | acc | lm_lr |" in md and "| b | 0.7 |  |" in md and "| a | 0.9 | 0.01 |" in md


def test_without_a_key_rows_accumulate(results):
    for acc in (0.1, 0.2):
        common.append_result("u", {"tag": "a", "acc": acc}, "U", "d")
    assert [r["acc"] for r in read(results / "u.csv")] == ["0.1", "0.2"]
    assert not list(results.glob("*.tmp"))


def test_run_recipe_runs_each_step_in_a_fresh_process_once(tmp_path):
    """The scripts' steps: ``python -m ulmfit`` in a fresh process with ULMFIT_HOME, its output in the log; a rerun
    reuses a step whose entry exists; a failing step exits with the tail of its output."""
    log, step = tmp_path / "steps.log", Step("tfidf", "t", {"tokenizer.n_workers": 0})  # the embedded IMDB sample
    (seconds,) = common.run_recipe(tmp_path, [step], log=log)
    assert seconds > 0 and common.has_entry(tmp_path, "tfidf", "t") and "test_accuracy" in log.read_text()
    assert common.run_recipe(tmp_path, [step], log=log) == [None]
    assert common.entry_metrics(tmp_path, "tfidf", "t")["n_test"] == 1000
    with pytest.raises(SystemExit, match=r"(?s)failed \(\d\): .*no_such_group.*Could not override"):
        common.run_recipe(tmp_path, [Step("tfidf", "u", {"no_such_group": "x"})])


def test_run_recipe_reuses_finished_entries_and_resumes_interrupted_ones(tmp_path, monkeypatch):
    """The one resume of every recipe (ulmfit.recipes.run_steps): an entry in the store or shipped with the package
    is not run again, a step with a checkpoint continues with resume=true, any other starts afresh."""
    from ulmfit.checkpoint import checkpoint_dir
    ran = []
    monkeypatch.setattr(common, "run_ulmfit", lambda *args, home, log=None, env=None: ran.append(list(args)))
    (tmp_path / "store" / "lm_finetune" / "done").mkdir(parents=True)
    (tmp_path / "store" / "lm_finetune" / "done" / "lineage.json").write_text('{"created": "2026-12-01T00:00:00"}')
    (checkpoint_dir(tmp_path / "store", "classify", "cut") / "epoch-0001").mkdir(parents=True)
    (checkpoint_dir(tmp_path / "store", "classify", "cut") / "epoch-0001" / "state.json").write_text("{}")
    # direction=both writes <name>-bwd first: its checkpoint, or its entry without the forward one, is a cut run
    (checkpoint_dir(tmp_path / "store", "classify", "pair-bwd") / "epoch-0001").mkdir(parents=True)
    (checkpoint_dir(tmp_path / "store", "classify", "pair-bwd") / "epoch-0001" / "state.json").write_text("{}")
    (tmp_path / "store" / "lm_finetune" / "half-bwd").mkdir(parents=True)
    (tmp_path / "store" / "lm_finetune" / "half-bwd" / "lineage.json").write_text('{"created": "2026-12-01T00:00:00"}')
    steps = [Step("pretrain", "general-lm"), Step("lm_finetune", "done"), Step("classify", "cut", {"seed": 1}),
             Step("tfidf", "new", {"data": "imdb"}), Step("lm_finetune", "half", {"direction": "both"}),
             Step("classify", "pair", {"direction": "both"}), Step("classify", "fresh", {"direction": "both"})]
    seconds = common.run_recipe(tmp_path, steps)
    assert seconds[:2] == [None, None] and all(s is not None for s in seconds[2:])
    assert ran == [["stage=classify", "seed=1", "run_name=cut", "resume=true"],
                   ["stage=tfidf", "data=imdb", "run_name=new"],
                   ["stage=lm_finetune", "direction=both", "run_name=half", "resume=true"],
                   ["stage=classify", "direction=both", "run_name=pair", "resume=true"],
                   ["stage=classify", "direction=both", "run_name=fresh"]]


def test_sample_efficiency_summary_averages_seeds_per_method_and_size():
    rows = [{"method": m, "n_train": n, "test_accuracy": a} for m, n, a in [
        ("tfidf", "100", "0.60"), ("tfidf", "100", "0.70"), ("tfidf", "500", "0.80"),
        ("ulmfit_semi_supervised", "100", "0.655"), ("ulmfit_semi_supervised", "22500", "0.8967")]]
    table = sample_efficiency.summary_table(rows).splitlines()
    assert table[0] == "| method | 100 | 500 | 22,500 |"
    assert table[2] == "| tfidf | 65.0 (60.0-70.0, 2 seeds) | 80.0 | - |"
    assert table[3] == "| ulmfit_semi_supervised | 65.5 | - | 89.7 |"
    assert len(table) == 4  # methods that never ran get no row


def test_sample_efficiency_targets_compare_the_best_ulmfit_variant():
    rows = [{"method": m, "n_train": n, "test_accuracy": a} for m, n, a in [
        ("ulmfit_supervised", "100", "0.70"), ("ulmfit_semi_supervised", "100", "0.74"),
        ("ulmfit_semi_supervised", "100", "0.78"), ("tfidf", "100", "0.64"),
        ("ulmfit_supervised", "22500", "0.883"), ("ulmfit_semi_supervised", "22500", "0.8967")]]
    table = sample_efficiency.targets_table(rows).splitlines()
    assert table[2] == "| 100 | 75.0 | 76.0 | ulmfit_semi_supervised | met | 64.0 |"
    assert table[3] == "| 22,500 | 91.5 | 89.7 | ulmfit_semi_supervised | missed by 1.8 | - |"
    assert len(table) == 4  # 1,000 labels never ran: no row


def test_imdb_transfer_runs_every_method_on_the_same_draw_of_labels():
    imdb = Path("/d/imdb")
    runs = {m: compose(*imdb_transfer.run_plan(m, 100, 2, imdb).args()) for m in imdb_transfer.METHODS}
    for key in ("data.root", "data.n_train", "data.valid_frac", "data_seed", "data.n_test"):
        assert len({str(OmegaConf.select(c, key)) for c in runs.values()}) == 1, key
    assert OmegaConf.select(runs["ulmfit"], "stage.parent") == imdb_transfer.LM
    assert OmegaConf.select(runs["ulmfit"], "train.epochs") == 10 and runs["ulmfit"].data.n_train == 100
    lm = compose(*imdb_transfer.lm_step(imdb).args())
    assert (lm.stage.parent, lm.stage.lm_tokens, lm.data.max_vocab, lm.train.lr) == ("general-lm", None, 30000, 1e-2)
    assert list(lm.stage.lm_parts) == ["train", "unsup"]


def test_imdb_transfer_summary_checks_targets_and_both_baselines():
    rows = [{"method": m, "labels": "1000", "test_accuracy": a}
            for m, a in (("tfidf", "0.83"), ("nbsvm", "0.85"), ("ulmfit", "0.86"), ("ulmfit", "0.88"))]
    rows.append({"method": "ulmfit", "n_train": "1000", "test_accuracy": "0.10"})  # an old-recipe row: left out
    table = imdb_transfer.targets_table(rows).splitlines()
    assert table[2] == "| 1,000 | 87.0 | 87.0 | 83.0 | 85.0 | target met; above both baselines |"
    assert len(table) == 3
    summary = imdb_transfer.summary_table(rows)
    assert "| ulmfit | 87.0 ± 1.4 (2 draws) |" in summary and "nbsvm" in summary


@pytest.mark.parametrize("task", pretraining_ablation.TASKS)
def test_pretraining_ablation_changes_only_the_parent(task):
    """Within a task the three sources compose the same LM fine-tuning and classifier configs but for the parent
    (and the entry names); the general source's runs are those trec_cpu / imdb_transfer report."""
    data = Path("/d/x")
    configs = {}
    for source in pretraining_ablation.SOURCES:
        steps = pretraining_ablation.plan(task, source, data)
        configs[source] = [OmegaConf.to_container(compose(*step.args())) for step in steps]
    for lm, clas in configs.values():
        for cfg in (lm, clas):
            cfg.pop("run_name")
        assert lm["stage"].pop("parent") in pretraining_ablation.SOURCES.values()
        clas["stage"].pop("parent")
    assert configs["none"] == configs["wikitext2"] == configs["general"]
    if task == "trec":
        assert pretraining_ablation.plan(task, "general", data) == \
            trec_cpu.plan("trec-glm", "general-lm", data, Path("/w"), 42)[1:]
    else:
        assert pretraining_ablation.plan(task, "general", data)[1] == imdb_transfer.run_plan("ulmfit", 1000, 1, data)


def test_recipe_flattens_an_experiment_and_those_it_extends():
    r = common.recipe("imdb_cpu_labelled_lm")
    assert r["stage.lm_parts"] == ["train"] and r["stage.lm_tokens"] is None and r["train.lr"] == 1e-2
    assert "run_name" not in common.recipe("imdb_cpu_pretrain") and common.recipe("imdb_cpu_pretrain")["train.epochs"] == 2
    assert common.as_overrides({"a.b": [1, "x"], "c": None, "d": True}) == ["a.b=[1,x]", "c=null", "d=true"]
    assert common.recipe_text("trec_cpu_classify") == ("`experiment=trec_cpu_classify` "
                                                       "(train.epochs=4 train.bs=32 train.precision=fp32)")


def test_semi_all_accepts_imdb_cpus_classifier_only_with_the_same_recipe(monkeypatch, tmp_path):
    """--semi-all reports experiments.imdb_cpu's classifier as the all-label semi-supervised run: its config
    (as the old override lists made it, run in bf16) must match the recipe, and its parent the semi-supervised LM."""
    ran = ["stage=classify", "data=imdb", "data.root=/d/imdb", "stage.parent=semi", "train.epochs=3", "train.lr=1e-2",
           "train.bs=64", "train.unfreeze_phases=3", "data.n_valid=500", "seed=42", "train.precision=bf16"]
    entry = {"cfg": compose(*ran), "parent": "semi"}
    monkeypatch.setattr(sample_efficiency, "has_entry", lambda home, stage, name: True)
    monkeypatch.setattr(sample_efficiency, "entry_config", lambda home, stage, name: entry["cfg"])
    monkeypatch.setattr(sample_efficiency, "entry_parent", lambda home, stage, name: entry["parent"])
    assert sample_efficiency.reused_semi_all(tmp_path, "imdb-cpu2-clas", "semi", sample_efficiency.ALL) == "imdb-cpu2-clas"
    entry["cfg"] = compose(*ran, "train.unfreeze_phases=null")
    with pytest.raises(SystemExit, match=r"train.unfreeze_phases=None \(expected 3\)"):
        sample_efficiency.reused_semi_all(tmp_path, "imdb-cpu2-clas", "semi", sample_efficiency.ALL)
    entry["cfg"], entry["parent"] = compose(*ran), "other-ft"
    with pytest.raises(SystemExit, match=r"parent other-ft \(expected semi\)"):
        sample_efficiency.reused_semi_all(tmp_path, "imdb-cpu2-clas", "semi", sample_efficiency.ALL)


def test_imdb_cpu_defaults_name_the_entries_its_results_report():
    """Run without --tag/--pretrain, experiments.imdb_cpu writes (or reuses) the entries of the row that
    results/imdb_cpu.md and the README report, imdb-cpu2-clas above all."""
    args = imdb_cpu.parser().parse_args([])
    names = imdb_cpu.names(args.tag, args.pretrain)
    assert names["classify"] == "imdb-cpu2-clas" and names["pretrain"] == "imdb-cpu-pretrain"
    results = REPO / "experiments" / "results"
    (row,) = [r for r in read(results / "imdb_cpu.csv") if r["tag"] == args.tag]
    assert row["pretrain_entry"] == names["pretrain"] and row["lm_tokens"] == "12000000"
    steps = {r["entry"] for r in read(results / "imdb_cpu_steps.csv")}
    assert {f"{s}/{n}" for s, n in names.items() if s != "pretrain"} <= steps and "pretrain/imdb-cpu-pretrain" in steps
    assert any(r["entry"] == names["classify"] and r["lm_entry"] == names["lm_finetune"]  # --semi-all's row
               for r in read(results / "sample_efficiency.csv"))


def test_scripts_run_as_modules_from_the_repository_root():
    """``python -m experiments.<script>`` needs no sys.path set-up (the package is the repository's folder)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "experiments.imdb_cpu", "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--until" in proc.stdout and "conf/experiment/imdb_cpu_" in proc.stdout
    import importlib
    for script in ("make_sample", "plots", "wikitext2_cpu"):  # the others are imported above
        importlib.import_module(f"experiments.{script}")


def test_imdb_gpu_composes_paper_size_steps_from_portable_tokens():
    """experiment=imdb_gpu: every step composes and validates; paper-size model on CUDA; each step reads its
    portable token file; the classifier starts from the fine-tuned LM and the baselines share its split."""
    from ulmfit.schema import validate
    cfg = compose("experiment=imdb_gpu", "paths.tokens=/t", "run_name=g")
    steps = {step.stage: compose(*step.args()) for step in steps_from_config(cfg, {})}
    assert list(steps) == ["pretrain", "lm_finetune", "classify", "tfidf", "nbsvm"]
    for stage, step in steps.items():
        validate(step)
        assert step.data.tokens == ("/t/wiki-gutenberg-5m.tokens" if stage == "pretrain" else "/t/imdb.tokens")
        assert step.train.device == "cuda" and step.run_name == f"g-{stage}"
    assert (steps["pretrain"].model.emb_sz, steps["pretrain"].model.n_hid, steps["pretrain"].model.n_layers) == \
        (400, 1152, 3)
    assert steps["lm_finetune"].stage.parent == "g-pretrain" and steps["classify"].stage.parent == "g-lm_finetune"
    split = ("data.valid_frac", "data.n_train", "seed")
    assert {tuple(str(OmegaConf.select(steps[s], k)) for k in split) for s in ("classify", "tfidf", "nbsvm")} == \
        {tuple(str(OmegaConf.select(steps["classify"], k)) for k in split)}


@pytest.mark.parametrize("experiment", ["imdb_paper", "imdb_paper_wt103", "imdb_gpu"])
def test_paper_size_pipelines_train_the_paper_size_model_in_every_step(experiment):
    """A pipeline's steps compose their own configs: a model chosen in the experiment's defaults would not reach
    them (it did not, before: imdb_paper's steps trained the CPU-size model)."""
    cfg = compose(f"experiment={experiment}", "paths.data=/d", "paths.tokens=/t", "run_name=p")
    for step in steps_from_config(cfg, {}):
        if step.stage in ("tfidf", "nbsvm", "import_wt103"):
            continue
        model = compose(*step.args()).model
        assert (model.emb_sz, model.n_hid, model.n_layers) == (400, 1152, 3), step.stage


def test_quickstart_results_header_reads_the_recipe_from_its_entries_configs():
    """experiments.quickstart describes the run by its entries' configs and metrics, not by numbers of its own."""
    from experiments import quickstart
    steps = {s.stage: s for s in steps_from_config(compose("experiment=quickstart", "run_name=q"), {})}
    lm, clas = compose(*steps["lm_finetune"].args(), "train.epochs=7"), compose(*steps["classify"].args())
    text = quickstart.description("quickstart", lm, clas, {"n_train": 4907, "n_valid": 545, "n_test": 500})
    assert "on the 5,452 embedded TREC-6 training questions (at most 7 epochs, bs 32)" in text
    assert f"(at most {clas.train.epochs} final epochs, bs {clas.train.bs})" in text and "(500 questions)" in text


def test_imdb_gpu_runs_end_to_end_from_portable_files_on_cpu(results, tmp_path, monkeypatch):
    """The GPU experiment's script on CPU at toy sizes (the command line overrides every step): portable token
    files exported from the embedded samples, no raw data read by the run; one results row with every method."""
    from tests.conftest import TINY, run_cli
    tokens, home = tmp_path / "tokens", tmp_path / "home"
    # a subset of the sample's labelled reviews (~60k of its ~290k train tokens) keeps the LM and classifier short
    for data, name, subset in (("imdb_sample", "imdb", ["stage.max_tokens=60000"]),
                               ("wikitext2_sample", "wiki-gutenberg-5m", [])):
        out = run_cli("stage=export_tokens", f"data={data}", f"stage.output={tokens / name}.tokens", *subset,
                      cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
    monkeypatch.setattr(sys, "argv", ["imdb_gpu", "--home", str(home), "--tokens", str(tokens), "--name", "g", *TINY,
                                      "train.precision=fp32"])
    from experiments import imdb_gpu
    imdb_gpu.main()
    row, = read(results / "imdb_gpu.csv")
    assert row["run"] == "g" and row["gpu"] and float(row["ulmfit_test_acc"]) > 0
    assert float(row["tfidf_test_acc"]) > 0 and float(row["nbsvm_test_acc"]) > 0 and row["target_met"] in ("True", "False")


def test_pretraining_ablation_runs_each_source_and_writes_a_row(tmp_path, monkeypatch):
    """main() end to end with the runs recorded instead of executed: WikiText-2 is pretrained before its source's
    steps, and each source writes one row."""
    calls = []
    monkeypatch.setattr(pretraining_ablation, "run_recipe", lambda home, steps, log=None: calls.extend(steps))
    metrics = {"valid_perplexity_before": 300.0, "valid_perplexity": 30.0, "train_seconds": 5.0,
               "test_accuracy": 0.9, "test_error_rate": 0.1, "n_train": 100}
    monkeypatch.setattr(pretraining_ablation, "entry_metrics", lambda home, stage, name: metrics)
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr("sys.argv", ["pretraining_ablation", "--home", str(tmp_path / "home"), "--tasks", "trec"])
    pretraining_ablation.main()
    assert [(step.stage, step.name) for step in calls] == [
        ("lm_finetune", "pt-none-trec-ft"), ("classify", "pt-none-trec-clas"),
        ("pretrain", "wt2-cpu-pretrain"), ("lm_finetune", "pt-wikitext2-trec-ft"),
        ("classify", "pt-wikitext2-trec-clas"), ("lm_finetune", "trec-glm-ft"), ("classify", "trec-glm-clas")]
    rows = list(csv.DictReader(open(tmp_path / "results" / "pretraining_ablation.csv")))
    assert [(r["source"], r["test_error_pct"]) for r in rows] == [("none", "10.0"), ("wikitext2", "10.0"),
                                                                  ("general", "10.0")]


def _two_question_trec(tmp_path: Path) -> Path:
    """A TREC folder with two training and two test questions, for scripts whose runs are faked."""
    trec = tmp_path / "trec"
    trec.mkdir()
    (trec / "train_5500.label").write_text("HUM:ind Who was Galileo ?\nLOC:city Where is Aspen ?\n")
    (trec / "TREC_10.label").write_text("NUM:dist How far is Denver ?\nHUM:desc Who was Newton ?\n")
    return trec


def test_trec_ensemble_trains_each_seed_on_one_lm_and_scores_them_together(tmp_path, monkeypatch):
    """main() with the runs recorded instead of executed: one LM (trec_cpu's), one classifier per seed with only
    the seed changed (seed 42's is trec_cpu's entry), then stage=evaluate on every member at once, and a row
    with each member's error and the ensemble's."""
    from experiments import trec_ensemble
    trec = _two_question_trec(tmp_path)
    calls, cli = [], []
    monkeypatch.setattr(trec_ensemble, "run_recipe", lambda home, steps, log=None: calls.extend(steps))

    def evaluate(*args, home, log=None):
        cli.append(args)
        out = Path(dict(a.split("=", 1) for a in args)["stage.output"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text('{"accuracy": 0.96, "error_rate": 0.04, "n": 2}')
        return 3.0
    monkeypatch.setattr(trec_ensemble, "run_ulmfit", evaluate)
    errors = {"trec-glm-clas": 0.06, "trec-glm-clas-s43": 0.05, "trec-glm-clas-s44": 0.07}
    monkeypatch.setattr(trec_ensemble, "entry_metrics",
                        lambda home, stage, name: {"test_error_rate": errors[name], "train_seconds": 10.0})
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr("sys.argv", ["trec_ensemble", "--home", str(tmp_path / "home"), "--trec", str(trec)])
    trec_ensemble.main()

    lm, *members = calls
    _, trec_lm, trec_clas = trec_cpu.plan("trec-glm", "general-lm", trec, Path("."), 42)
    assert lm == trec_lm and lm.name == "trec-glm-ft"
    assert [m.name for m in members] == list(errors) and members[0] == trec_clas
    for first, other in zip(members, members[1:]):
        assert {**first.overrides, "seed": 0} == {**other.overrides, "seed": 0}
    assert [m.overrides["seed"] for m in members] == [42, 43, 44]
    args = dict(a.split("=", 1) for a in cli[0])
    assert args["stage"] == "evaluate" and args["stage.models"] == f"[{','.join(errors)}]"
    test = read(Path(args["stage.input"]))
    assert [(r["text"], r["label"]) for r in test] == [("How far is Denver ?", "NUM"), ("Who was Newton ?", "HUM")]
    row, = read(tmp_path / "results" / "trec_ensemble.csv")
    assert (row["member_errors_pct"], row["mean_member_error_pct"], row["ensemble_error_pct"]) == \
        ("6.0 5.0 7.0", "6.0", "4.0")
    assert row["classify_s_total"] == "30" and row["n_test"] == "2"


def _fake_evaluate(cli: list, accuracy) -> callable:
    """A stand-in for run_ulmfit("stage=evaluate", ...): records its arguments, writes a report whose accuracy
    is ``accuracy(args)``."""
    def evaluate(*args, home, log=None):
        cli.append(dict(a.split("=", 1) for a in args))
        out = Path(cli[-1]["stage.output"])
        out.parent.mkdir(parents=True, exist_ok=True)
        acc = accuracy(cli[-1])
        out.write_text(f'{{"accuracy": {acc}, "error_rate": {1 - acc}, "n": 2}}')
        return 3.0
    return evaluate


def test_trec_ensemble_direction_both_adds_each_members_backward_model(tmp_path, monkeypatch):
    """--direction both: the backward LM from general-lm-bwd and each member's backward model from it (same
    recipe and seed), then each forward + backward pair and all of them scored with stage=evaluate direction=both;
    the row has the backward, pair and overall figures beside the forward ones."""
    from experiments import trec_ensemble
    trec = _two_question_trec(tmp_path)
    calls, cli = [], []
    monkeypatch.setattr(trec_ensemble, "run_recipe", lambda home, steps, log=None: calls.extend(steps))
    # forward alone 0.90, a pair 0.95, all four 0.97
    monkeypatch.setattr(trec_ensemble, "run_ulmfit", _fake_evaluate(cli, lambda a: 0.9 if a["direction"] == "forward"
                                                                     else 0.95 if "," not in a["stage.models"] else 0.97))
    errors = {"trec-glm-clas": 0.06, "trec-glm-clas-s43": 0.05, "trec-glm-clas-bwd": 0.08, "trec-glm-clas-s43-bwd": 0.07}
    monkeypatch.setattr(trec_ensemble, "entry_metrics",
                        lambda home, stage, name: {"test_error_rate": errors[name], "train_seconds": 10.0})
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr("sys.argv", ["trec_ensemble", "--home", str(tmp_path / "home"), "--trec", str(trec),
                                     "--seeds", "42", "43", "--direction", "both"])
    trec_ensemble.main()

    lm, *members, lm_bwd, bwd1, bwd2 = calls
    assert [s.name for s in (lm, *members)] == ["trec-glm-ft", "trec-glm-clas", "trec-glm-clas-s43"]
    assert (lm_bwd.name, lm_bwd.overrides["stage.parent"], lm_bwd.overrides["direction"]) == \
        ("trec-glm-ft-bwd", "general-lm-bwd", "backward")
    for fwd, bwd in zip(members, (bwd1, bwd2)):  # the same recipe and seed, on the backward LM
        assert bwd.name == f"{fwd.name}-bwd" and bwd.overrides == {**fwd.overrides, "direction": "backward",
                                                                  "stage.parent": "trec-glm-ft-bwd"}
    assert [(a["direction"], a["stage.models"]) for a in cli] == [
        ("forward", "[trec-glm-clas,trec-glm-clas-s43]"), ("both", "[trec-glm-clas]"),
        ("both", "[trec-glm-clas-s43]"), ("both", "[trec-glm-clas,trec-glm-clas-s43]")]
    row, = read(tmp_path / "results" / "trec_ensemble.csv")
    assert (row["direction"], row["member_errors_pct"], row["backward_member_errors_pct"]) == ("both", "6.0 5.0", "8.0 7.0")
    assert (row["ensemble_error_pct"], row["pair_errors_pct"], row["fwd_bwd_ensemble_error_pct"]) == ("10.0", "5.0 5.0", "3.0")


def test_own_csv_direction_both_adds_the_backward_lm_classifier_and_their_ensemble(tmp_path, monkeypatch):
    """--direction both: the backward LM from the backward model of the forward LM's parent, the classifier's
    backward model on it (same recipe), stage=evaluate direction=both on the test CSV, and the ulmfit row with the
    backward and ensemble figures beside the forward ones."""
    from experiments import own_csv
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    monkeypatch.setattr(own_csv, "dataset_files", lambda home, name, shared: (train, test))
    calls, cli = [], []
    monkeypatch.setattr(own_csv, "run_recipe", lambda home, steps, log=None: calls.extend(steps))
    monkeypatch.setattr(own_csv, "run_ulmfit", _fake_evaluate(cli, lambda a: 0.93))
    monkeypatch.setattr(own_csv, "entry_parent", lambda home, stage, name: "general-lm")
    lm = {"valid_perplexity_before": 400.0, "valid_perplexity": 100.0, "epochs": 3, "train_seconds": 60.0}
    clas = {"n_train": 90, "n_valid": 10, "n_test": 20, "train_seconds": 30.0, "kept_epoch": None}
    metrics = {"csv-ag_news-lm": lm, "csv-ag_news-lm-bwd": {**lm, "valid_perplexity": 110.0},
               "csv-ag_news-ulmfit": {**clas, "valid_accuracy": 0.9, "test_accuracy": 0.91},
               "csv-ag_news-ulmfit-bwd": {**clas, "valid_accuracy": 0.88, "test_accuracy": 0.89}}
    monkeypatch.setattr(own_csv, "entry_metrics", lambda home, stage, name: metrics[name])
    monkeypatch.setattr(own_csv, "entry_lineage", lambda *a: {"precision": "fp32"})
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr("sys.argv", ["own_csv", "--home", str(tmp_path / "home"), "--datasets", "ag_news",
                                     "--methods", "ulmfit", "--direction", "both"])
    own_csv.main()

    lm_fwd, lm_bwd, clas_fwd, clas_bwd = calls
    assert lm_bwd == Step("lm_finetune", "csv-ag_news-lm-bwd", {**lm_fwd.overrides, "stage.parent": "general-lm-bwd",
                                                                "direction": "backward"})
    assert clas_bwd == Step("classify", "csv-ag_news-ulmfit-bwd", {**clas_fwd.overrides, "direction": "backward",
                                                                   "stage.parent": "csv-ag_news-lm-bwd"})
    evaluate, = cli
    assert (evaluate["direction"], evaluate["stage.models"], evaluate["stage.input"]) == \
        ("both", "[csv-ag_news-ulmfit]", str(test))
    row, = read(tmp_path / "results" / "own_csv.csv")
    assert (row["direction"], row["test_accuracy"], row["backward_test_accuracy"], row["ensemble_test_accuracy"],
            row["backward_valid_accuracy"], row["backward_lm_ppl_after"]) == ("both", "0.91", "0.89", "0.93", "0.88",
                                                                              "110.0")


def test_trec_ensemble_needs_two_distinct_members(monkeypatch, capsys):
    from experiments import trec_ensemble
    for seeds in (["42"], ["42", "43", "42"]):
        monkeypatch.setattr("sys.argv", ["trec_ensemble", "--seeds", *seeds])
        with pytest.raises(SystemExit) as exit_:
            trec_ensemble.main()
        assert exit_.value.code == 2 and "at least two --seeds, each given once" in capsys.readouterr().err


def test_quickstart_length_runs_its_steps_and_timing_runs_through_run_recipe(tmp_path, monkeypatch):
    """main() with the runs faked: the LM and classifier of a recipe through run_recipe (the one runner), then each
    timing run alone, with the AVX2 caps in its environment and a log of its own whose fastai epoch times, scaled
    by the process's CPU / wall seconds, give the estimate; a rerun that reuses every entry writes the same rows."""
    import itertools
    from experiments import quickstart_length as qlen
    from ulmfit.emulation import AVX2_ENV
    calls, ran = [], True
    epochs = {"qlen-avx2-lm": "epoch 1/1: train_loss 4.2  valid_loss 3.7  time 01:40\n",
              "qlen-avx2-clas": "".join(f"phase {k}/5, epoch 1/1: train_loss 0.9  valid_loss 0.7  time 00:{10 * k}\n"
                                        for k in range(1, 6))}

    def run_recipe(home, steps, log=None, env=None):
        calls.append(([s.name for s in steps], log, env))
        for step in steps:
            if ran and step.name in epochs:
                log.write_text(f"step 5/10, loss 1.0\n{epochs[step.name]}")
        return [10.0 if ran else None for _ in steps]
    monkeypatch.setattr(qlen, "run_recipe", run_recipe)
    monkeypatch.setattr(qlen, "children_cpu_seconds", lambda count=itertools.count(0, 5): float(next(count)))
    monkeypatch.setattr(qlen, "entry_lineage", lambda home, stage, name: {
        "precision": "fp32", "environment": {"cpu_emulation": "EMULATED AVX2-only (...)"}})
    lm = {"epochs": 4, "valid_perplexity": 31.8, "train_seconds": 100.0}
    clas = {"phases": [{"history": [{"accuracy": 0.7}]}, {"history": [{"accuracy": 0.8}]}], "valid_accuracy": 0.8,
            "n_valid": 100, "kept_epoch": {"phase": 1, "epoch": 0}, "valid_loss": 0.5, "train_seconds": 50.0}
    monkeypatch.setattr(qlen, "entry_metrics", lambda home, stage, name: lm if stage == "lm_finetune" else clas)
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    home = tmp_path / "home"
    monkeypatch.setattr("sys.argv", ["quickstart_length", "--home", str(home), "--recipes", "4:2:2"])
    qlen.main()

    assert calls == [(["qlen-lm4", "qlen-lm4-p2e2"], home / "quickstart_length.log", None),
                     (["qlen-avx2-lm"], home / "logs" / "qlen-avx2-lm.log", AVX2_ENV),
                     (["qlen-avx2-clas"], home / "logs" / "qlen-avx2-clas.log", AVX2_ENV)]
    table = {r["epoch"]: (r["run"], r["wall_s"], r["process_cpu_per_wall"], r["alone_s"])
             for r in read(tmp_path / "results" / "quickstart_length_epochs.csv")}
    assert table == {"lm": ("qlen-avx2-lm", "100", "0.5", "50.0"),
                     **{f"phase{k}": ("qlen-avx2-clas", str(10 * k), "0.5", f"{5.0 * k}") for k in range(1, 6)}}
    row, = read(tmp_path / "results" / "quickstart_length.csv")
    assert (row["recipe"], row["valid_acc_per_epoch"], row["kept"], row["train_s"], row["est_avx2_train_s"]) == \
        ("4:2:2", "70.0 80.0", "phase 2, epoch 1", "150", str(4 * 50 + 5 + 10 + 2 * 25))

    ran = False  # every entry exists: the epoch table is read back, nothing is timed again (no log to read)
    for log in (home / "logs").iterdir():
        log.unlink()
    qlen.main()
    again, = read(tmp_path / "results" / "quickstart_length.csv")
    assert {**again, "date": ""} == {**row, "date": ""}
    assert {r["epoch"]: r["alone_s"] for r in read(tmp_path / "results" / "quickstart_length_epochs.csv")} == \
        {k: v[3] for k, v in table.items()}
