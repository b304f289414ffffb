"""The results tables the experiment scripts write (experiments/common.py)."""

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import common  # noqa: E402


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


def test_sample_efficiency_summary_averages_seeds_per_method_and_size():
    import sample_efficiency
    rows = [{"method": m, "n_train": n, "test_accuracy": a} for m, n, a in [
        ("tfidf", "100", "0.60"), ("tfidf", "100", "0.70"), ("tfidf", "500", "0.80"),
        ("ulmfit_semi_supervised", "100", "0.655"), ("ulmfit_semi_supervised", "22500", "0.8967")]]
    table = sample_efficiency.summary_table(rows).splitlines()
    assert table[0] == "| method | 100 | 500 | 22,500 |"
    assert table[2] == "| tfidf | 65.0 (60.0-70.0, 2 seeds) | 80.0 | - |"
    assert table[3] == "| ulmfit_semi_supervised | 65.5 | - | 89.7 |"
    assert len(table) == 4  # methods that never ran get no row


def test_sample_efficiency_targets_compare_the_best_ulmfit_variant():
    import sample_efficiency
    rows = [{"method": m, "n_train": n, "test_accuracy": a} for m, n, a in [
        ("ulmfit_supervised", "100", "0.70"), ("ulmfit_semi_supervised", "100", "0.74"),
        ("ulmfit_semi_supervised", "100", "0.78"), ("tfidf", "100", "0.64"),
        ("ulmfit_supervised", "22500", "0.883"), ("ulmfit_semi_supervised", "22500", "0.8967")]]
    table = sample_efficiency.targets_table(rows).splitlines()
    assert table[2] == "| 100 | 75.0 | 76.0 | ulmfit_semi_supervised | met | 64.0 |"
    assert table[3] == "| 22,500 | 91.5 | 89.7 | ulmfit_semi_supervised | missed by 1.8 | - |"
    assert len(table) == 4  # 1,000 labels never ran: no row


# The recipes as the scripts composed them before they moved to conf/experiment/ (seed 42 unless set; the stage,
# run name, parent and data root are the scripts' own): each step's new command line must compose the same config.
IMDB, TREC = ["data=imdb", "data.root=/d/imdb"], ["data=trec", "data.root=/d/trec"]
TREC_FT = ["train.epochs=10", "train.lr=4e-3", "train.bs=32", "stage.lm_parts=[train]"]
TREC_CLAS = ["train.epochs=4", "train.lr=1e-2", "train.bs=32"]
BEFORE = {
    "imdb_cpu pretrain": ["stage=pretrain", "run_name=p", "experiment=wikitext2_cpu", "data.root=/d/wt2",
                          "train.epochs=2", "seed=42", "train.precision=auto"],
    "imdb_cpu lm_finetune": ["stage=lm_finetune", "run_name=f", *IMDB, "stage.parent=p", "train.epochs=1",
                             "train.lr=1e-2", "train.bs=64", "stage.lm_parts=[train,unsup]", "data.max_vocab=30000",
                             "stage.lm_tokens=12000000", "data.valid_frac=0.02", "seed=42", "train.precision=auto"],
    "imdb_cpu classify": ["stage=classify", "run_name=c", *IMDB, "stage.parent=f", "train.epochs=3", "train.lr=1e-2",
                          "train.bs=64", "train.phase_lr_mult=0.5", "train.unfreeze_phases=3", "data.n_valid=500",
                          "seed=42", "train.precision=auto"],
    "trec_cpu pretrain": ["experiment=wikitext2_cpu", "data.root=/d/wt2", "run_name=p", "seed=42",
                          "train.precision=fp32"],
    "trec_cpu lm_finetune": ["stage=lm_finetune", *TREC, "stage.parent=p", "run_name=f", *TREC_FT, "seed=42",
                             "train.precision=fp32"],
    "trec_cpu classify": ["stage=classify", *TREC, "stage.parent=f", "run_name=c", *TREC_CLAS, "seed=42",
                          "train.precision=fp32"],
    "ablations no_stlr lm_finetune": ["stage=lm_finetune", *TREC, "train.precision=fp32", "stage.parent=p",
                                      "run_name=f", *TREC_FT, "train.schedule=constant", "seed=7"],
    "ablations no_gradual_unfreezing classify": ["stage=classify", *TREC, "train.precision=fp32", "stage.parent=f",
                                                 "run_name=c", *TREC_CLAS, "train.gradual_unfreezing=false",
                                                 "train.epochs=8", "seed=7"],
    "sample_efficiency lm_finetune": ["stage=lm_finetune", *IMDB, "data.n_train=1000", "seed=1", "stage.parent=p",
                                      "stage.lm_parts=[train]", "stage.lm_only_labelled=true", "train.lr=1e-2",
                                      "train.bs=64", "data.max_vocab=30000", "data.n_valid=500", "train.epochs=10",
                                      "train.precision=auto", "run_name=l"],
    "sample_efficiency classify": ["stage=classify", *IMDB, "data.n_train=1000", "seed=1", "stage.parent=f",
                                   "train.lr=1e-2", "train.phase_lr_mult=0.5", "train.unfreeze_phases=3",
                                   "data.n_valid=500", "train.epochs=5", "train.bs=32", "train.precision=auto",
                                   "run_name=c"],
}
AFTER = {
    "imdb_cpu pretrain": ["stage=pretrain", "run_name=p", "experiment=imdb_cpu_pretrain", "data.root=/d/wt2",
                          "seed=42"],
    "imdb_cpu lm_finetune": ["stage=lm_finetune", "run_name=f", "experiment=imdb_cpu_lm_finetune",
                             "data.root=/d/imdb", "stage.parent=p", "seed=42"],
    "imdb_cpu classify": ["stage=classify", "run_name=c", "experiment=imdb_cpu_classify", "data.root=/d/imdb",
                          "stage.parent=f", "seed=42"],
    "trec_cpu pretrain": ["stage=pretrain", "run_name=p", "experiment=wikitext2_cpu", "data.root=/d/wt2", "seed=42"],
    "trec_cpu lm_finetune": ["stage=lm_finetune", "run_name=f", "experiment=trec_cpu_lm_finetune",
                             "data.root=/d/trec", "stage.parent=p", "seed=42"],
    "trec_cpu classify": ["stage=classify", "run_name=c", "experiment=trec_cpu_classify", "data.root=/d/trec",
                          "stage.parent=f", "seed=42"],
    "ablations no_stlr lm_finetune": ["stage=lm_finetune", "run_name=f", "experiment=trec_cpu_lm_finetune",
                                      "data.root=/d/trec", "stage.parent=p", "train.schedule=constant", "seed=7"],
    "ablations no_gradual_unfreezing classify": ["stage=classify", "run_name=c", "experiment=trec_cpu_classify",
                                                 "data.root=/d/trec", "stage.parent=f",
                                                 "train.gradual_unfreezing=false", "train.epochs=8", "seed=7"],
    "sample_efficiency lm_finetune": ["stage=lm_finetune", "run_name=l", "experiment=imdb_cpu_labelled_lm",
                                      "data.root=/d/imdb", "data.n_train=1000", "seed=1", "stage.parent=p",
                                      "train.epochs=10"],
    "sample_efficiency classify": ["stage=classify", "run_name=c", "experiment=imdb_cpu_classify",
                                   "data.root=/d/imdb", "data.n_train=1000", "seed=1", "stage.parent=f",
                                   "train.epochs=5", "train.bs=32"],
}
# Key values each step must keep (a change to a default they rely on shows here).
KEY_VALUES = {
    "imdb_cpu pretrain": {"model.emb_sz": 200, "data.format": "wikitext", "train.epochs": 2, "train.lr": 1e-2,
                          "train.drop_mult": 0.3, "train.precision": "auto"},
    "imdb_cpu lm_finetune": {"data.format": "imdb", "train.epochs": 1, "train.lr": 1e-2, "train.bs": 64,
                             "stage.lm_parts": ["train", "unsup"], "data.max_vocab": 30000,
                             "stage.lm_tokens": 12_000_000, "data.valid_frac": 0.02, "train.precision": "auto"},
    "imdb_cpu classify": {"train.epochs": 3, "train.lr": 1e-2, "train.bs": 64, "train.phase_lr_mult": 0.5,
                          "train.unfreeze_phases": 3, "data.n_valid": 500, "train.precision": "auto"},
    "trec_cpu lm_finetune": {"data.format": "trec", "train.epochs": 10, "train.lr": 4e-3, "train.bs": 32,
                             "stage.lm_parts": ["train"], "train.precision": "fp32"},
    "trec_cpu classify": {"train.epochs": 4, "train.lr": 1e-2, "train.bs": 32, "train.precision": "fp32"},
    "sample_efficiency lm_finetune": {"stage.lm_parts": ["train"], "stage.lm_only_labelled": True,
                                      "stage.lm_tokens": None, "data.valid_frac": 0.1, "data.n_valid": 500,
                                      "data.max_vocab": 30000, "train.lr": 1e-2, "train.epochs": 10},
}


@pytest.mark.parametrize("step", list(BEFORE))
def test_recipe_configs_compose_what_the_scripts_ran(step):
    from omegaconf import OmegaConf

    from ulmfit.config import compose
    before, after = compose(*BEFORE[step]), compose(*AFTER[step])
    assert OmegaConf.to_container(after) == OmegaConf.to_container(before)
    for key, value in KEY_VALUES.get(step, {}).items():
        assert OmegaConf.select(after, key) == value, key
