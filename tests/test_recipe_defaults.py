"""The defaults that carry the method: the best epoch kept and early stopping, whole training batches, labels that
pay for their own validation, baselines that choose C on that validation, LM epochs sized to the corpus, and
bad recipe options refused before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import TINY, run_cli
from ulmfit.config import CONF_DIR
from ulmfit.data import classification_split
from ulmfit.data.loaders import clas_dataloaders, clas_loader
from ulmfit.data.splits import holdout_split
from ulmfit.data.tokens import Docs
from ulmfit.models import build_classifier, classifier_info, model_info
from ulmfit.precision import resolve_precision
from ulmfit.training import (KeepBestEpoch, StopEarly, auto_epochs, clas_learner, fit_phases, kept_history,
                             monitor_comp, resolve_auto_epochs, seed_everything)


def _docs(n: int, seed: int = 0) -> Docs:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 40, size=n)
    return Docs(rng.integers(2, 50, size=int(lengths.sum())), np.concatenate([[0], np.cumsum(lengths)]),
                ["a" if i % 2 else "b" for i in range(n)])


def _learner(*overrides: str):
    seed_everything(0)  # the same initialisation and batch order in every run, whatever ran before
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["stage=classify", *TINY, *overrides])
    docs, vocab = _docs(32), ["xxunk", "xxpad"] + [f"w{i}" for i in range(54)]
    dls = clas_dataloaders(docs, _docs(16, seed=1), ["a", "b"], vocab, 8, 10, torch.device("cpu"))
    info = classifier_info(model_info(cfg.model, len(vocab), 1.0), cfg.model.head, ["a", "b"], 0.5, 10)
    return clas_learner(dls, build_classifier(info), cfg.train, resolve_precision("fp32", torch.device("cpu"))), \
        cfg.train


def test_the_best_epoch_over_all_phases_is_restored():
    learn, train_cfg = _learner("train.epochs=3", "train.patience=null", "train.lr=0.05")
    _, phases = fit_phases(learn, train_cfg)
    losses = [(r["phase"], e, h["valid_loss"]) for r in phases for e, h in enumerate(r["history"])]
    best = min(losses, key=lambda x: x[2])
    assert (learn.kept_epoch["phase"], learn.kept_epoch["epoch"]) == best[:2]
    assert kept_history(phases, learn.kept_epoch)["valid_loss"] == best[2]
    # the weights in the model now are that epoch's: validating them gives its loss again
    assert learn.validate()[0] == pytest.approx(best[2], rel=1e-5)


def test_the_last_phase_stops_after_patience_epochs_without_improvement():
    # an LR of ~0 leaves the validation loss where it is: no epoch after the first improves on it
    learn, train_cfg = _learner("train.epochs=6", "train.patience=1", "train.lr=1e-30",
                                "train.gradual_unfreezing=false")
    _, phases = fit_phases(learn, train_cfg)
    assert len(phases[-1]["history"]) == 2  # the first epoch, then one without improvement
    assert learn.kept_epoch["epoch"] == 0


class _Killed(Exception):
    pass


def _interrupted_and_resumed(tmp_path, overrides, kill_at):
    """fit_phases with checkpoints, cut (an exception) right after checkpoint ``kill_at`` is written, then a new
    learner resumed from it; and an uninterrupted run with the same seed. Returns both learners and records."""
    from ulmfit.checkpoint import RunCheckpoint

    class Cut(RunCheckpoint):
        def save(self, *args, **kwargs):
            path = super().save(*args, **kwargs)
            if self.saved_epochs == kill_at:
                raise _Killed("cut")
            return path

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["stage=classify", *TINY, *overrides])
    runs = []
    for ckpt_class, resume in ((None, False), (Cut, False), (RunCheckpoint, True)):
        learn, train_cfg = _learner(*overrides)
        checkpoint = None if ckpt_class is None else ckpt_class(tmp_path, "classify", "cut", cfg)
        state = checkpoint.prepare(resume) if checkpoint is not None else None
        try:
            runs.append((learn, *fit_phases(learn, train_cfg, checkpoint=checkpoint, resume=state)))
        except _Killed:
            pass
    return runs


def test_a_resumed_run_keeps_the_epoch_an_uninterrupted_one_keeps(tmp_path):
    """The best epoch so far and early stopping's count travel in the checkpoint; the epochs a resumed fit
    passes over are not compared again (they once counted as epochs without improvement and stopped it)."""
    (learn_a, _, phases_a), (learn_b, _, phases_b) = _interrupted_and_resumed(
        tmp_path, ["train.epochs=5", "train.patience=3", "train.lr=0.05", "train.gradual_unfreezing=false"], 3)
    assert learn_b.kept_epoch == learn_a.kept_epoch
    assert [len(r["history"]) for r in phases_b] == [len(r["history"]) for r in phases_a]
    a, b = learn_a.model.state_dict(), learn_b.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_both_trackers_continue_only_from_a_checkpoint_of_their_monitor():
    """KeepBestEpoch and StopEarly read a checkpoint's best value alike (ResumableTracker): only one saved for
    the same train.monitor, and not the state of a checkpoint that has none yet."""
    keep, stop = KeepBestEpoch("accuracy"), StopEarly("accuracy", patience=2)
    ours = {"monitor": "accuracy", "best": 0.8, "where": {"phase": 0, "epoch": 1, "accuracy": 0.8}, "wait": 1}
    for saved, applies in ((ours, True), ({**ours, "monitor": "valid_loss"}, False),
                           ({**ours, "best": None}, False), (None, False)):
        assert keep.saved_best(saved) is applies and stop.saved_best(saved) is applies
    keep.load_checkpoint_state({**ours, "monitor": "valid_loss"}, {})
    assert keep.best is None and keep.checkpoint_state() == ({"monitor": "accuracy", "best": None, "where": None},
                                                             None)
    keep.load_checkpoint_state(ours, {})
    assert keep.checkpoint_state() == ({"monitor": "accuracy", "best": 0.8, "where": ours["where"]}, {})


def test_each_monitor_improves_the_right_way():
    """fastai guesses the direction from the name ('loss' or 'error': lower), which would keep the LM's worst
    epoch by perplexity."""
    assert [monitor_comp(m) for m in ("valid_loss", "perplexity", "accuracy")] == [np.less, np.less, np.greater]
    assert KeepBestEpoch("perplexity").comp is np.less


def test_training_batches_are_whole_and_the_left_out_texts_change():
    docs = _docs(90)
    dl = clas_loader(docs, [0] * 90, 16, 70, shuffle=True, device=torch.device("cpu"))
    seen = set()
    for _ in range(6):
        batches = list(dl.get_idxs())
        assert len(batches) == 80  # 5 whole batches of 16; 10 texts sit the epoch out
        seen |= set(int(i) for i in batches)
        assert all(len(b[0]) == 16 for b in dl)
    assert len(seen) > 80  # not the same 10 texts every epoch
    # a set smaller than one batch still trains (one partial batch)
    assert [len(b[0]) for b in clas_loader(_docs(5), [0] * 5, 16, 70, True, torch.device("cpu"))] == [5]


class _Corpus:
    def __init__(self, n: int):
        self.docs = _docs(n)

    def part(self, name: str) -> Docs:
        return self.docs


def test_a_label_budget_pays_for_its_validation():
    keep, held = classification_split(_Corpus(1000), 0.1, seed=3, n_train=100)
    assert (len(keep), len(held)) == (90, 10) and not set(keep) & set(held)
    again = classification_split(_Corpus(1000), 0.1, seed=3, n_train=100)
    assert all(np.array_equal(a, b) for a, b in zip((keep, held), again))
    # without a budget: the hold-out of all labelled texts, as before
    full = classification_split(_Corpus(1000), 0.1, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(full, holdout_split(1000, 0.1, 3)))


def test_baselines_choose_C_on_validation():
    from ulmfit.stages.baselines import fit_choosing, make_baseline
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(200)]
    texts, y = [], []
    for i in range(400):  # the label is carried by one word in a sea of noise words
        label = i % 2
        texts.append(" ".join([f"signal{label}", *rng.choice(words, 30)]))
        y.append(label)
    y = np.array(y)
    pipe = make_baseline("tfidf", {"ngram_range": [1, 1], "min_df": 1, "max_features": None, "sublinear_tf": True,
                                   "C": 1.0, "max_iter": 1000}, seed=0)
    fitted, C, scores = fit_choosing(pipe, [1e-4, 10.0], texts[:300], y[:300], texts[300:], y[300:])
    assert scores[10.0] < scores[1e-4] and C == 10.0  # validation log-loss
    assert fitted[-1].C == 10.0


def test_lm_epochs_fit_the_corpus():
    cfg = {"epochs": "auto", "auto_tokens": 1_500_000, "max_epochs": 20}
    assert auto_epochs(cfg, 68_000) == 20       # a few thousand questions: many passes (capped)
    assert auto_epochs(cfg, 200_000) == 8
    assert auto_epochs(cfg, 22_000_000) == 1    # IMDB's 100k reviews: one pass
    assert auto_epochs({**cfg, "epochs": 3}, 68_000) == 3


@pytest.mark.parametrize("stage", ["pretrain", "lm_finetune"])
def test_the_lm_stages_record_the_epochs_auto_resolves_to(stage):
    """pretrain and lm_finetune resolve train.epochs=auto in their (struct) config, so the fit and the entry's
    config hold the number; a number given stays."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"stage={stage}", "train.epochs=auto", "train.auto_tokens=1500000",
                                           "train.max_epochs=20"])
        given = compose("config", overrides=[f"stage={stage}", "train.epochs=3"])
    assert resolve_auto_epochs(cfg, 200_000) == 8 and cfg.train.epochs == 8
    assert resolve_auto_epochs(given, 200_000) == 3 and given.train.epochs == 3


@pytest.mark.parametrize("args, fragment", [
    (["stage=classify", "train.monitor=f1"], "train.monitor='f1' is not a metric of this stage"),
    (["stage=lm_finetune", "train.monitor=recall"], "train.monitor='recall' is not a metric of this stage"),
    (["stage=classify", "train.patience=0"], "train.patience=0 is not valid"),
    (["stage=lm_finetune", "train.patience=-2"], "train.patience=-2 is not valid"),
    (["stage=pretrain", "train.patience=true"], "train.patience=True is not valid"),
    (["stage=classify", "train.epochs=auto"], "train.epochs=auto sizes language-model training"),
    (["stage=tfidf", "stage.params.C=[]"], "stage.params.C=[]"),
])
def test_bad_recipe_options_stop_before_any_work(args, fragment, tmp_path):
    out = run_cli(*TINY, *args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().startswith("ulmfit: error:") and fragment in out.stderr, out.stderr[-2000:]
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.json"))


def test_rare_words_the_parent_knows_can_stay_in_the_vocabulary():
    from collections import Counter
    from ulmfit.data.tokens import with_parent_words
    vocab = ["xxunk", "xxpad", "good", "film", "xxfake", "xxfake", "xxfake", "xxfake"]
    counts = Counter({"good": 5, "film": 4, "superb": 1, "zzyzx": 1})
    parent = ["xxunk", "xxpad", "superb", "dreadful", "film"]
    assert with_parent_words(vocab, counts, parent, "none") == vocab
    seen = with_parent_words(vocab, counts, parent, "seen")
    assert seen[:5] == ["xxunk", "xxpad", "good", "film", "superb"] and len(seen) % 8 == 0
    assert "dreadful" not in seen and "zzyzx" not in seen  # never in the texts / unknown to the parent
    assert "dreadful" in with_parent_words(vocab, counts, parent, "all")
    with pytest.raises(Exception, match="stage.parent_vocab"):
        with_parent_words(vocab, counts, parent, "most")


def test_the_probe_scores_the_frozen_encoder_on_classify_splits(tmp_path, mini_imdb):
    """stage=probe on the shipped LM's encoder: C chosen by cross-validation, the same split as classify, an entry
    with metrics and lineage and no weights."""
    from tests.conftest import imdb_csv
    from ulmfit.stages import get_stage
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["stage=probe", f"paths.root={tmp_path}", *imdb_csv(mini_imdb),
                                           "stage.parent_stage=pretrain", "stage.parent=general-lm",
                                           "tokenizer.n_workers=0", "train.device=cpu", "data.n_train=100"])
    entry = get_stage("probe")(cfg)
    m = entry.metrics
    assert (m["n_train"], m["n_valid"], m["n_test"]) == (90, 10, 60) and m["n_features"] == 3 * 200
    assert m["C"] in list(cfg.stage.Cs) and 0.0 <= m["test_accuracy"] <= 1.0
    assert entry.lineage["parent"]["name"] == "general-lm"
    assert not (entry.path / "model.safetensors").exists()
