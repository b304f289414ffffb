"""Bad input through the CLI: one clear message naming the problem and the fix, a non-zero exit (2 for
usage errors), no traceback, and the store left exactly as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY, imdb_csv, run_cli
from ulmfit.hardware import cpu_runs_bf16
from ulmfit.stages import get_stage
from ulmfit.store.manifest import write_manifest


def _snapshot(root: Path) -> dict[str, int]:
    store = root / "store"
    return {str(p.relative_to(store)): p.stat().st_size for p in store.rglob("*")} if store.exists() else {}


@pytest.fixture(scope="module")
def base(tmp_path_factory, mini_wikitext, mini_imdb) -> Path:
    """A store with a tiny pretrain entry ``pre`` and a tiny classifier ``clas`` (built once)."""
    from hydra import compose, initialize_config_dir
    from ulmfit.config import CONF_DIR
    root = tmp_path_factory.mktemp("bad_base")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for stage, extra in [("pretrain", ["data=wikitext2", f"data.root={mini_wikitext}", "run_name=pre"]),
                             ("classify", [*imdb_csv(mini_imdb), "stage.parent_stage=pretrain", "stage.parent=pre",
                                           "run_name=clas", "train.gradual_unfreezing=false"])]:
            get_stage(stage)(compose("config", overrides=[f"stage={stage}", f"paths.root={root}", *TINY, *extra]))
    return root


@pytest.fixture
def home(base, tmp_path) -> Path:
    shutil.copytree(base, tmp_path / "home")
    return tmp_path / "home"


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _csv(home: Path, train: Path, *extra: str) -> list[str]:
    return ["data=csv", f"data.files.train={train}", *extra]


CASES = {
    # name: (setup(home, mini) -> CLI args, expected message fragment, expected exit code)
    "missing file": (lambda h, m: ["stage=tfidf", *_csv(h, h / "nope.csv")], "does not exist", 2),
    "empty file": (lambda h, m: ["stage=tfidf", *_csv(h, _write(h / "e.csv", ""))], "is empty", 2),
    "wrong columns": (lambda h, m: ["stage=tfidf", *_csv(h, _write(h / "c.csv", "review,stars\nok,1\n"))],
                      "has no column 'text'", 2),
    "empty texts": (lambda h, m: ["stage=tfidf", *_csv(h, _write(h / "t.csv", "text,label\n,pos\n ,neg\n"))],
                    "has no text", 2),
    "NaN labels": (lambda h, m: ["stage=tfidf", *_csv(h, _write(h / "n.csv", "text,label\na b,pos\nc d,\n"))],
                   "without a label", 2),
    "single class": (lambda h, m: ["stage=tfidf", *_csv(h, _write(h / "s.csv", "text,label\na b,pos\nc d,pos\n"))],
                     "at least two classes", 2),
    "regression target not a number": (lambda h, m: ["stage=tfidf", *_csv(h, _write(h / "r.csv", "text,label\na b,4\n"
                                                                                     "c d,four\n"), "data.task=regression")],
                                       "the target of data row 2 is 'four', not a number", 2),
    "multilabel row without labels": (lambda h, m: ["stage=classify", *_csv(h, _write(h / "m.csv", "text,label\na b,x;y\n"
                                                                                      "c d,;\n"), "data.task=multilabel",
                                                                  "stage.parent_stage=none")],
                                      "data row 2 has no labels", 2),
    "NB-SVM on a regression": (lambda h, m: ["stage=nbsvm", *imdb_csv(m), "data.task=regression"], "use stage=tfidf", 2),
    "non-UTF-8 bytes": (lambda h, m: ["stage=tfidf", *_csv(h, _write(h / "u.csv", b"text,label\ncaf\xe9 ok,pos\n"))],
                        "data.encoding", 2),
    "labels unseen at evaluate": (lambda h, m: ["stage=evaluate", "stage.models=[clas]", "stage.input=" + str(
        _write(h / "ev.csv", "text,label\ngreat film,pos\nawful,meh\n"))], "never saw", 2),
    "config typo": (lambda h, m: ["stage=pretrain", "trian.lr=1"], "trian", 2),
    "unknown stage option": (lambda h, m: ["stage=pretrian"], "pretrian", 2),
    "missing required value": (lambda h, m: ["stage=predict"], "stage.input", 2),
    "store entry does not exist": (lambda h, m: ["stage=lm_finetune", *imdb_csv(m), "stage.parent=nope"],
                                   "No store entry 'pretrain/nope'", 2),
    # a parent whose files changed since it was written (its manifest.json): one line naming entry and file
    "truncated weights": (lambda h, m: [_truncate(h / "store/pretrain/pre/model.safetensors"), "stage=lm_finetune",
                                        *imdb_csv(m), "stage.parent=pre"][1:],
                          "Store entry pretrain/pre is damaged: model.safetensors is truncated", 2),
    "flipped byte in the weights": (lambda h, m: [_flip_byte(h / "store/pretrain/pre/model.safetensors"),
                                                  "stage=lm_finetune", *imdb_csv(m), "stage.parent=pre"][1:],
                                    "Store entry pretrain/pre is damaged: model.safetensors does not match", 2),
    "flipped byte in a classifier": (lambda h, m: [_flip_byte(h / "store/classify/clas/model.safetensors"),
                                                   "stage=predict", f"stage.input={m / 'test.csv'}",
                                                   "stage.models=[clas]"][1:],
                                     "Store entry classify/clas is damaged: model.safetensors does not match", 2),
    "architecture mismatch": (lambda h, m: [_edit_model_json(h / "store/pretrain/pre/model.json"), "stage=lm_finetune",
                                            *imdb_csv(m), "stage.parent=pre"][1:], "do not match the model", 2),
    "vocab-size mismatch": (lambda h, m: [_drop_vocab(h / "store/pretrain/pre/vocab.json"), "stage=lm_finetune",
                                          *imdb_csv(m), "stage.parent=pre"][1:], "vocab.json has", 2),
    "direction mismatch": (lambda h, m: ["stage=lm_finetune", *imdb_csv(m), "stage.parent=pre", "direction=backward"],
                           "forward model", 2),
    # both directions from a parent without its backward model (pre-bwd): what to make, and how. (A backward run
    # with no parent named now starts from the shipped general-lm-bwd; one naming a forward parent is the mismatch.)
    "both directions without a backward parent": (lambda h, m: ["stage=lm_finetune", *imdb_csv(m), "direction=both",
                                                                "stage.parent=pre"],
                                                  "There is no pretrain/pre-bwd, the backward model beside pretrain/pre", 2),
    # no parent named, none built with the run's tokenizer (pre and the shipped LMs are spaCy words): how to make one
    "no parent with the run's tokenizer": (
        lambda h, m: ["stage=lm_finetune", *imdb_csv(m), "data.tokenizer=sentencepiece"],
        "is built with SentencePiece subwords, which this run reads (data.tokenizer=sentencepiece): pretrain one with "
        "stage=pretrain data.tokenizer=sentencepiece, or name a parent with stage.parent=<name>.", 2),
    "no parent with the run's tokenizer, both directions": (
        lambda h, m: ["stage=lm_finetune", *imdb_csv(m), "data.tokenizer=sentencepiece", "direction=both"],
        "is built with SentencePiece subwords", 2),
    "unknown direction": (lambda h, m: ["stage=classify", "direction=sideways"], "one of forward, backward, both", 2),
    "unwritable store": (lambda h, m: ["stage=tfidf", *imdb_csv(m), f"paths.store={_write(h / 'afile', 'x')}/store"],
                         "not writable", 2),
    "diverging training": (lambda h, m: ["stage=pretrain", "data=wikitext2", f"data.root={m.parent / 'w'}",
                                         "train.lr=1e12", "train.clip=null"], "diverged", 2),
    "fp16 on CPU": (lambda h, m: ["stage=pretrain", "train.precision=fp16"], "needs a CUDA GPU", 2),
    # option values of the wrong type or range: refused before any data is read (ulmfit/schema.py)
    "LR not a number": (lambda h, m: ["stage=classify", "train.lr=abc"], "train.lr='abc' is not valid", 2),
    "unknown precision": (lambda h, m: ["stage=pretrain", "train.precision=fp8"], "one of auto, fp32", 2),
    "dropout out of range": (lambda h, m: ["stage=lm_finetune", "model.hidden_p=1.5"], "in [0, 1)", 2),
    "zero token budget": (lambda h, m: ["stage=lm_finetune", "stage.lm_tokens=0"], "stage.lm_tokens=0", 2),
    "validation fraction out of range": (lambda h, m: ["stage=classify", "data.valid_frac=1"], "in (0, 1)", 2),
    "unknown schedule": (lambda h, m: ["stage=classify", "train.schedule=cosine"], "stlr, one_cycle, constant", 2),
    "fractional subset size": (lambda h, m: ["stage=tfidf", "data.n_train=2.5"], "positive whole number", 2),
    "bad value in a pipeline step": (lambda h, m: ["stage=pipeline", "++stage.steps.classify={train.lr:-1}"],
                                     "train.lr=-1 is not valid", 2),
    "a pipeline step as a list": (lambda h, m: ["experiment=quickstart", "stage.steps.pretrain=['data=wikitext2']"],
                                  "stage.steps.pretrain is ['data=wikitext2']; it must be a mapping of overrides", 2),
    # options renamed since (ulmfit/schema.py RENAMED): the new spelling, before Hydra's "not in struct"
    "old backwards option": (lambda h, m: ["stage=lm_finetune", "backwards=true"],
                             "backwards=true was replaced by direction=backward (forward|backward|both).", 2),
    "old backwards option, appended": (lambda h, m: ["stage=classify", "+backwards=false"],
                                       "backwards=false was replaced by direction=forward", 2),
    "old text column option": (lambda h, m: ["stage=tfidf", *imdb_csv(m), "data.text_col=review"],
                               "data.text_col=review was replaced by data.text_cols=[review]", 2),
    "old option in a pipeline step": (lambda h, m: ["stage=pipeline", "++stage.steps.classify={backwards:true}"],
                                      "backwards=true was replaced by direction=backward", 2),
}
if not cpu_runs_bf16():  # only such a CPU shows it end to end; tests/test_precision.py checks the rule everywhere
    CASES["bf16 on a CPU without it"] = (lambda h, m: ["stage=pretrain", "train.precision=bf16"],
                                         "train.precision=bf16: this CPU has no bf16 support", 2)


def _truncate(path: Path) -> str:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return ""


def _flip_byte(path: Path) -> str:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # inside the last tensor: the file still parses
    path.write_bytes(bytes(data))
    return ""


# The next two edit an entry consistently (its manifest re-recorded), as a buggy writer could have written it:
# the checks behind the manifest's still refuse it.
def _edit_model_json(path: Path) -> str:
    info = json.loads(path.read_text())
    info["config"]["n_hid"] += 8
    path.write_text(json.dumps(info))
    write_manifest(path.parent)
    return ""


def _drop_vocab(path: Path) -> str:
    path.write_text(json.dumps(json.loads(path.read_text())[:-5]))
    write_manifest(path.parent)
    return ""


HYDRA_REPORTS = ("config typo", "unknown stage option")


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_clear_message(case, home, mini_imdb, mini_wikitext, tmp_path):
    setup, fragment, code = CASES[case]
    if not (mini_imdb.parent / "w").exists():
        shutil.copytree(mini_wikitext, mini_imdb.parent / "w")  # a fixed path for the divergence case
    args = setup(home, mini_imdb)
    before = _snapshot(home)
    out = run_cli(*args, *TINY, cwd=home)
    assert out.returncode == code, (out.returncode, out.stderr[-2000:])
    assert fragment in out.stderr, out.stderr[-2000:]
    if code == 2:  # Hydra words its own messages for bad overrides; ours start with "ulmfit: error:"
        assert "Traceback" not in out.stderr
        assert case in HYDRA_REPORTS or out.stderr.strip().startswith("ulmfit: error:")
    # one line, nothing else (no warning, no traceback)
    if any(f in fragment for f in ("damaged", "backward model beside", "was replaced by", "is built with")):
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr[-2000:]
    print(f"\n{case} -> exit {out.returncode}: {out.stderr.strip().splitlines()[-1]}")  # for the record (-s)
    after = _snapshot(home)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing changed or lost
    assert not [k for k in after if k not in before and not k.startswith(".")], "a new entry appeared"


def test_a_one_million_token_document_is_handled(tmp_path):
    """Not an error: a 1M-token review trains (BPT3C: the encoder reads it in bptt chunks, its hidden state
    detached between them, and keeps the last max_len outputs), with bounded memory, and is predicted."""
    import random
    import resource

    import pandas as pd
    rng = random.Random(0)
    words = "the film was great and i loved every minute of it but the ending was bad".split()
    short = [{"text": " ".join(rng.choice(words) for _ in range(30)), "label": lab} for lab in ["pos", "neg"] * 20]
    big = {"text": " ".join(rng.choice(words) for _ in range(1_000_000)), "label": "pos"}
    pd.DataFrame([big, *short]).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame([big, *short[:10]]).to_csv(tmp_path / "test.csv", index=False)
    data = ["data=csv", f"data.files.train={tmp_path / 'train.csv'}", f"data.files.test={tmp_path / 'test.csv'}",
            "data.min_freq=1"]
    out = run_cli("stage=classify", *data, "stage.parent_stage=none", *TINY, "train.bptt=500",
                  "train.gradual_unfreezing=false", "run_name=big", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads((tmp_path / "store" / "classify" / "big" / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_valid"] == 41 and "test_accuracy" in metrics
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    assert peak_gb < 3, f"peak RSS {peak_gb:.1f} GB"
    tfidf = run_cli("stage=tfidf", *data, "run_name=big", cwd=tmp_path)
    assert tfidf.returncode == 0, tfidf.stderr[-2000:]
