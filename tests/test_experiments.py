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
