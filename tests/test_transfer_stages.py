"""pretrain -> lm_finetune -> classify -> predict/evaluate on tiny data, through the real configs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from ulmfit.config import CONF_DIR
from ulmfit.data.loaders import clas_dataloaders
from ulmfit.data.tokens import Docs
from ulmfit.errors import UsageError
from ulmfit.models import build_classifier, build_language_model, classifier_info, encoder_of, model_info
from ulmfit.hardware import resolve_precision
from ulmfit.stages import get_stage
from ulmfit.store import Store, lineage_chain
from ulmfit.training import clas_learner, fit_phases
from ulmfit.weights import transferred_lm_weights
from tests.conftest import TINY, imdb_csv, run_cli, step_mapping


def _run(stage: str, root, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"stage={stage}", f"paths.root={root}", *TINY, *overrides])
    return get_stage(stage)(cfg)


@pytest.fixture(scope="module")
def chain(tmp_path_factory, mini_wikitext, mini_imdb):
    """One entry per stage, forward direction; the classifier records its unfreezing phases."""
    root = tmp_path_factory.mktemp("chain")
    pre = _run("pretrain", root, "data=wikitext2", f"data.root={mini_wikitext}", "run_name=pre")
    ft = _run("lm_finetune", root, *imdb_csv(mini_imdb), "stage.parent=pre", "run_name=ft")
    clas = _run("classify", root, *imdb_csv(mini_imdb), "stage.parent=ft", "run_name=clas", "train.bs=16")
    return root, pre, ft, clas


def test_lineage_links_the_three_entries(chain):
    root, pre, ft, clas = chain
    refs = [e.ref for e in lineage_chain(Store(root / "store"), clas)]
    assert refs == ["classify/clas", "lm_finetune/ft", "pretrain/pre"]
    assert ft.lineage["data"]["parts"] == ["train", "unsup"]   # the LM saw train + unlabelled texts
    assert clas.lineage["parent"]["name"] == "ft"
    # one lineage builder (ulmfit.stages.common.lineage): the same keys in every stage's entry
    keys = {"stage", "name", "created", "parent", "data", "parent_data", "precision", "environment"}
    assert all(keys <= set(e.lineage) for e in (pre, ft, clas))
    assert all({"fingerprint", "format", "source", "parts"} <= set(e.lineage["data"]) for e in (pre, ft, clas))
    assert pre.lineage["parent_data"] is None and ft.lineage["parent_data"]["same_as_this_run"] is False


def test_vocab_transfer_keeps_pretrained_rows(chain):
    _, pre, ft, _ = chain
    old = build_language_model(pre.model_info)
    pre.load_weights(old)
    new_vocab = ft.vocab
    state = transferred_lm_weights(pre, new_vocab)
    old_emb, new_emb = old[0].encoder.weight.detach(), state["0.encoder.weight"]
    old_index = {t: i for i, t in enumerate(pre.vocab)}
    shared = [t for t in new_vocab if t in old_index]
    fresh = [i for i, t in enumerate(new_vocab) if t not in old_index]
    assert len(shared) > 20 and fresh
    for t in shared:
        torch.testing.assert_close(new_emb[new_vocab.index(t)], old_emb[old_index[t]])
    for i in fresh[:10]:  # new tokens start at the mean pretrained embedding
        torch.testing.assert_close(new_emb[i], old_emb.mean(0))
    assert ft.metrics["new_tokens"] == len(fresh)


def test_classifier_encoder_is_the_lms_module_0_and_old_entries_still_load(chain, tmp_path):
    """LM entries hold one weights file; classify takes the encoder from it. An entry written before that, with
    the extra encoder.safetensors copy, feeds a classifier the same weights."""
    import shutil
    from safetensors.torch import save_model
    from ulmfit.weights import load_encoder, load_model
    root, _, ft, clas = chain
    assert not (ft.path / "encoder.safetensors").exists()
    lm = load_model(ft)
    old = tmp_path / "store" / "lm_finetune" / "ft-old"
    shutil.copytree(ft.path, old)
    save_model(encoder_of(lm), str(old / "encoder.safetensors"))  # as earlier versions wrote it
    for parent in (ft, Store(tmp_path / "store").get("lm_finetune", "ft-old")):
        model = build_classifier(clas.model_info)
        load_encoder(parent, model)
        expected = encoder_of(lm).state_dict()
        assert all(torch.equal(v, expected[k]) for k, v in encoder_of(model).state_dict().items())


def test_lm_finetune_improves_target_perplexity(chain):
    m = chain[2].metrics
    assert m["valid_perplexity"] < m["valid_perplexity_before"]


def test_classifier_reports_test_metrics_and_gradual_phases(chain):
    m = chain[3].metrics
    assert 0 <= m["test_accuracy"] <= 1 and m["test_error_rate"] == pytest.approx(1 - m["test_accuracy"])
    assert set(m["test_per_class"]) == {"neg", "pos"}
    assert np.sum(m["test_confusion_matrix"]["matrix"]) == 60
    # tiny model: 2 LSTM layers -> groups [embedding, lstm1, lstm2, head]; head, +lstm2, +lstm1, all
    assert [p["trainable_groups"] for p in m["phases"]] == [
        [False, False, False, True], [False, False, True, True], [False, True, True, True], [True] * 4]


def _tiny_classifier_learner(feature_extraction: bool = False, gradual: bool = True):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["stage=classify", *TINY, f"train.feature_extraction={feature_extraction}",
                                           f"train.gradual_unfreezing={gradual}"])
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 40, size=32)
    docs = Docs(rng.integers(2, 50, size=int(lengths.sum())), np.concatenate([[0], np.cumsum(lengths)]),
                ["a" if i % 2 else "b" for i in range(32)])
    vocab = ["xxunk", "xxpad"] + [f"w{i}" for i in range(54)]
    dls = clas_dataloaders(docs, docs, ["a", "b"], vocab, 8, 10, torch.device("cpu"))
    info = classifier_info(model_info(cfg.model, len(vocab), 1.0), cfg.model.head, ["a", "b"], 0.5, 10)
    precision = resolve_precision(cfg.train.precision, torch.device("cpu"))  # as the stage resolves it, once
    return clas_learner(dls, build_classifier(info), cfg.train, precision), cfg.train


def test_unfreeze_phases_caps_the_partial_phases():
    from omegaconf import OmegaConf
    from ulmfit.config import compose as compose_config
    from ulmfit.training import unfreezing_plan
    # classify's full train config (every key the plan reads), with the values this test depends on
    cfg = {**OmegaConf.to_container(compose_config("stage=classify").train), "epochs": 2, "phase_epochs": 1,
           "gradual_unfreezing": True, "feature_extraction": False, "unfreeze_phases": None}
    assert unfreezing_plan(5, cfg) == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2)]  # the paper: one group per epoch
    assert unfreezing_plan(5, {**cfg, "unfreeze_phases": 3}) == [(1, 1), (2, 1), (3, 1), (5, 2)]  # fastai's IMDB
    assert unfreezing_plan(5, {**cfg, "unfreeze_phases": 9}) == unfreezing_plan(5, cfg)
    with pytest.raises(Exception, match="unfreeze_phases"):
        unfreezing_plan(5, {**cfg, "unfreeze_phases": -1})


def test_gradual_unfreezing_sets_requires_grad_per_phase():
    learn, train_cfg = _tiny_classifier_learner()
    seen = []

    def check(learn, record):
        groups = learn.opt.param_lists
        seen.append([[p.requires_grad for p in g] for g in groups])
    fit_phases(learn, train_cfg, on_phase=check)
    n = len(seen[0])
    for phase, flags in enumerate(seen):  # phase k: exactly the top k+1 groups train
        expected = [i >= n - (phase + 1) for i in range(n)]
        assert [all(f) for f in flags] == expected and [any(f) for f in flags] == expected


def test_feature_extraction_trains_only_the_head():
    learn, train_cfg = _tiny_classifier_learner(feature_extraction=True)
    before = {k: v.clone() for k, v in encoder_of(learn.model).state_dict().items()}
    _, phases = fit_phases(learn, train_cfg)
    assert [p["trainable_groups"] for p in phases] == [[False, False, False, True]]
    after = encoder_of(learn.model).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_discriminative_lrs_reach_the_optimizer():
    learn, train_cfg = _tiny_classifier_learner(gradual=False)
    peaks = []
    learn.add_cb(type("Peek", (__import__("fastai.callback.core", fromlist=["Callback"]).Callback,),
                      {"before_fit": lambda self: peaks.append([h["lr"] for h in self.opt.hypers])})())
    fit_phases(learn, train_cfg)
    lr, n = train_cfg.lr, len(peaks[0])
    assert peaks[0] == pytest.approx([lr / 2.6 ** (n - 1 - i) for i in range(n)], rel=1e-12)


def test_predict_keeps_input_order_and_evaluate_reports(chain, mini_imdb, tmp_path):
    root = chain[0]
    test = pd.read_csv(mini_imdb / "test.csv")
    shuffled = test.sample(frac=1.0, random_state=1).reset_index(drop=True)
    shuffled["text"].to_frame().to_csv(tmp_path / "new.csv", index=False)
    out = _run("predict", root, f"stage.input={tmp_path / 'new.csv'}", f"stage.output={tmp_path / 'p.csv'}")
    assert len(out) == len(shuffled) and list(out["row"]) == list(range(len(shuffled)))
    # each row's probabilities are the ones the text gets on its own
    (tmp_path / "one.txt").write_text(shuffled["text"][7] + "\n")
    single = _run("predict", root, f"stage.input={tmp_path / 'one.txt'}", f"stage.output={tmp_path / 'q.csv'}")
    assert single["prob_pos"][0] == pytest.approx(out["prob_pos"][7], abs=1e-5)
    assert pd.read_csv(tmp_path / "p.csv")["prediction"].tolist() == out["prediction"].tolist()
    # input columns carried into the output (an id, the text), before the predictions
    shuffled.assign(id=[f"r{i}" for i in range(len(shuffled))])[["id", "text"]].to_csv(tmp_path / "ids.csv", index=False)
    kept = _run("predict", root, f"stage.input={tmp_path / 'ids.csv'}", f"stage.output={tmp_path / 'k.csv'}",
                "stage.keep_columns=[id,text]")
    assert list(kept.columns[:4]) == ["row", "id", "text", "prediction"]
    assert kept["id"].tolist() == [f"r{i}" for i in range(len(shuffled))] and kept["text"].tolist() == shuffled["text"].tolist()
    assert kept["prob_pos"].tolist() == out["prob_pos"].tolist()
    line = _run("predict", root, f"stage.input={tmp_path / 'one.txt'}", f"stage.output={tmp_path / 'l.csv'}",
                "stage.keep_columns=[text]")
    assert line["text"][0] == shuffled["text"][7]
    with pytest.raises(UsageError, match="no column 'idx' to keep"):
        _run("predict", root, f"stage.input={tmp_path / 'ids.csv'}", "stage.keep_columns=[idx]")
    test.to_csv(tmp_path / "labelled.csv", index=False)
    report = _run("evaluate", root, f"stage.input={tmp_path / 'labelled.csv'}", f"stage.output={tmp_path / 'e.json'}")
    assert report["n"] == 60 and report["accuracy"] == pytest.approx(chain[3].metrics["test_accuracy"], abs=1e-9)


def test_both_directions_fine_tune_classify_and_predict_as_one_ensemble(chain, mini_imdb, tmp_path):
    """direction=both: lm_finetune and classify write <run> from the parent and <run>-bwd from the parent's backward
    model (<parent>-bwd); classify reports forward, backward and their averaged-probability ensemble; predict and
    evaluate on the run name average the pair."""
    import shutil
    from ulmfit.evaluation import ensemble_report
    root = tmp_path / "home"  # a copy of the chain's store (pre, ft, clas): the entries below stay out of the others'
    shutil.copytree(chain[0] / "store", root / "store")
    _run("pretrain", root, *imdb_csv(mini_imdb), "direction=backward", "run_name=pre-bwd")
    with pytest.raises(UsageError, match="forward model"):  # direction mismatch is refused
        _run("lm_finetune", root, *imdb_csv(mini_imdb), "stage.parent=pre", "direction=backward", "run_name=x")
    ft = _run("lm_finetune", root, *imdb_csv(mini_imdb), "stage.parent=pre", "direction=both", "run_name=ft2")
    store = Store(root / "store")
    ft_bwd = store.get("lm_finetune", "ft2-bwd")
    assert (ft.lineage["parent"]["name"], ft_bwd.lineage["parent"]["name"]) == ("pre", "pre-bwd")
    assert (ft.model_info["backwards"], ft_bwd.model_info["backwards"]) == (False, True)
    # run again: refused before any work; resume=true reuses both entries, if they were run on the same data/seeds
    with pytest.raises(UsageError, match="lm_finetune/ft2-bwd' already exists"):
        _run("lm_finetune", root, *imdb_csv(mini_imdb), "stage.parent=pre", "direction=both", "run_name=ft2")
    assert _run("lm_finetune", root, *imdb_csv(mini_imdb), "stage.parent=pre", "direction=both", "run_name=ft2",
                "resume=true") == ft
    with pytest.raises(UsageError, match="exists but was run with other data_seed"):
        _run("lm_finetune", root, *imdb_csv(mini_imdb), "stage.parent=pre", "direction=both", "run_name=ft2",
             "resume=true", "data_seed=7")
    clas = _run("classify", root, *imdb_csv(mini_imdb), "stage.parent=ft2", "direction=both", "run_name=pair")
    bwd = store.get("classify", "pair-bwd")
    assert bwd.model_info["backwards"] is True and bwd.lineage["parent"]["name"] == "ft2-bwd"
    assert bwd.config().data_seed == clas.config().data_seed and bwd.metrics["n_valid"] == clas.metrics["n_valid"]
    figures = clas.metrics["directions"]
    assert figures["members"] == ["classify/pair", "classify/pair-bwd"]
    assert figures["forward"]["test_accuracy"] == pytest.approx(clas.metrics["test_accuracy"], abs=1e-9)
    assert figures["backward"]["test_accuracy"] == pytest.approx(bwd.metrics["test_accuracy"], abs=1e-9)
    assert {"valid_accuracy", "valid_loss", "test_accuracy", "test_error_rate", "test_loss"} <= set(figures["ensemble"])

    # each direction's probabilities on the test texts, predicted alone; the ensemble is their average
    test = pd.read_csv(mini_imdb / "test.csv")
    test.to_csv(tmp_path / "t.csv", index=False)
    alone = [_run("predict", root, f"stage.input={tmp_path / 't.csv'}", f"stage.models=[{m}]",
                  f"stage.output={tmp_path / f'{m}.csv'}") for m in ("pair", "pair-bwd")]
    both = _run("predict", root, f"stage.input={tmp_path / 't.csv'}", "stage.models=[pair]", "direction=both",
                f"stage.output={tmp_path / 'both.csv'}")
    prob_cols = [c for c in both.columns if c.startswith("prob_")]
    np.testing.assert_allclose(both[prob_cols].to_numpy(), (alone[0][prob_cols] + alone[1][prob_cols]).to_numpy() / 2,
                               rtol=1e-6)
    classes = [c.removeprefix("prob_") for c in prob_cols]
    targets = [classes.index(c) for c in test["label"]]
    expected = ensemble_report({m: a[prob_cols].to_numpy() for m, a in zip(("forward", "backward"), alone)}, targets,
                               classes)
    for model in ("forward", "backward", "ensemble"):  # classify's figures are those of the stored pair
        assert figures[model]["test_accuracy"] == pytest.approx(expected[model]["accuracy"], abs=1e-9)
        assert figures[model]["test_loss"] == pytest.approx(expected[model]["loss"], rel=1e-4)
    report = _run("evaluate", root, f"stage.input={tmp_path / 't.csv'}", "stage.models=[pair]", "direction=both",
                  f"stage.output={tmp_path / 'e.json'}")
    assert report["models"] == ["classify/pair", "classify/pair-bwd"]
    assert report["accuracy"] == pytest.approx(figures["ensemble"]["test_accuracy"], abs=1e-9)
    assert report["by_model"]["classify/pair-bwd"]["accuracy"] == pytest.approx(bwd.metrics["test_accuracy"], abs=1e-9)
    # the pair's forward member has no backward model of its own: refused before any work, naming what to make
    with pytest.raises(UsageError, match="There is no classify/clas-bwd, the backward model beside classify/clas"):
        _run("evaluate", root, f"stage.input={tmp_path / 't.csv'}", "stage.models=[clas]", "direction=both")


def test_classify_without_pretraining(tmp_path, mini_imdb):
    entry = _run("classify", tmp_path, *imdb_csv(mini_imdb), "stage.parent_stage=none", "run_name=scratch",
                 "train.gradual_unfreezing=false")
    assert entry.lineage["parent"] is None and len(entry.metrics["phases"]) == 1


def test_cli_quickstart_pipeline_on_tiny_data(tmp_path, mini_wikitext, mini_imdb):
    """The README's main job through the CLI, with each step pointed at tiny data and the tiny model."""
    csv = step_mapping(*imdb_csv(mini_imdb))
    out = run_cli("experiment=quickstart", "run_name=qs", *TINY,
                  f"stage.steps.pretrain={step_mapping('data=wikitext2', f'data.root={mini_wikitext}')}",
                  f"++stage.steps.lm_finetune={csv}", f"++stage.steps.classify={csv}", f"++stage.steps.tfidf={csv}",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "pipeline results" in out.stdout and "test_accuracy" in out.stdout and "tfidf/qs-tfidf" in out.stdout
    store = Store(tmp_path / "store")
    chain = lineage_chain(store, store.get("classify", "qs-classify"))
    assert [e.ref for e in chain] == ["classify/qs-classify", "lm_finetune/qs-lm_finetune", "pretrain/qs-pretrain"]
    # precision=auto by default: bf16 where the CPU has bf16 instructions, else fp32; recorded as run
    assert {e.lineage["precision"] for e in chain} == {resolve_precision("auto", torch.device("cpu"))}


def test_entries_keep_per_step_curves(chain):
    _, pre, _, clas = chain
    curves = clas.read_json("curves.json")
    phases = clas.metrics["phases"]
    assert len(curves["phase_start"]) == len(phases) and curves["phase_start"][0] == 0
    n_groups = len(phases[0]["trainable_groups"])
    assert all(len(lrs) == n_groups for lrs in curves["lrs"])
    assert curves["step"] == list(range(1, len(curves["step"]) + 1))
    # discriminative LRs: at every step each lower group's LR is the one above it / 2.6
    last = curves["lrs"][len(curves["lrs"]) // 2]
    assert all(abs(last[g] * 2.6 / last[g + 1] - 1) < 1e-6 for g in range(n_groups - 1))
    assert len(curves["valid_loss"]) == sum(len(p["history"]) for p in phases)
    assert len(pre.read_json("curves.json")["train_loss"]) == len(pre.read_json("curves.json")["step"]) > 0


def test_lm_on_labelled_texts_only(tmp_path, chain, mini_imdb):
    root, *_ = chain
    from ulmfit.data import classification_split, load_corpus
    ft = _run("lm_finetune", root, *imdb_csv(mini_imdb), "stage.parent=pre", "run_name=ft-labelled",
              "stage.lm_parts=[train]", "stage.lm_only_labelled=true", "data.n_train=20")
    cfg = ft.config()
    corpus = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache)
    keep, _ = classification_split(corpus, cfg.data.valid_frac, cfg.data_seed, 20)
    assert ft.metrics["train_tokens"] == int(corpus.part("train").lengths[keep].sum())
    # the sample-efficiency setting: 20 labels, 10% of them (2) held out for validation (data.n_valid=10 cannot
    # add more), a fixed 30-text test subset
    clas = _run("classify", root, *imdb_csv(mini_imdb), "stage.parent=ft-labelled", "run_name=clas-small",
                "data.n_train=20", "data.n_valid=10", "data.n_test=30", "train.gradual_unfreezing=false",
                "train.epochs=1", "train.bs=16")
    m = clas.metrics
    assert (m["n_train"], m["n_valid"], m["n_test"]) == (18, 2, 30)
    assert {k: clas.lineage["data"][k] for k in ("n_train", "n_valid", "n_test")} == {"n_train": 18, "n_valid": 2,
                                                                                     "n_test": 30}
    assert sum(map(sum, m["test_confusion_matrix"]["matrix"])) == 30
    with pytest.raises(Exception, match="lm_parts=\\[train\\]"):
        _run("lm_finetune", root, *imdb_csv(mini_imdb), "stage.parent=pre", "run_name=bad", "stage.lm_only_labelled=true")


def test_lm_token_budget(tmp_path, chain, mini_imdb):
    root, _, ft, _ = chain
    small = _run("lm_finetune", root, *imdb_csv(mini_imdb), "stage.parent=pre", "run_name=ft-budget",
                 "stage.lm_tokens=5000")
    assert 5000 <= small.metrics["train_tokens"] < min(10000, ft.metrics["train_tokens"])
    assert small.lineage["data"]["lm_tokens"] == 5000 and small.vocab == ft.vocab  # vocab from every text
    with pytest.raises(Exception, match="stage.lm_tokens"):
        _run("lm_finetune", root, *imdb_csv(mini_imdb), "stage.parent=pre", "run_name=bad", "stage.lm_tokens=-1")


def test_prediction_does_not_depend_on_eval_batch_size():
    """classify scores validation and test with train.eval_bs, not train.bs: batching (and the padding it adds)
    must not change a prediction, or results would depend on a speed setting."""
    from ulmfit.inference import docs_scores
    learn, _ = _tiny_classifier_learner()
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, 60, size=40)
    docs = Docs(rng.integers(2, 50, size=int(lengths.sum())), np.concatenate([[0], np.cumsum(lengths)]), ["a"] * 40)
    learn.model.eval()
    small, large = docs_scores(learn, docs, 3, 10), docs_scores(learn, docs, 40, 10)
    assert small.shape == (40, 2)
    np.testing.assert_allclose(small, large, atol=1e-5)
    # texts within one chunk: batches are padded to their longest row, not to a whole chunk
    short = Docs(docs.ids[:int(np.minimum(lengths, 10).sum())], np.concatenate([[0], np.cumsum(np.minimum(lengths, 10))]),
                 ["a"] * 40)
    np.testing.assert_allclose(docs_scores(learn, short, 3, 10), docs_scores(learn, short, 40, 10), atol=1e-5)


def test_classify_and_a_loaded_classifier_score_texts_alike_in_input_order():
    """classify's validation/test scores and ``Classifier.predict_docs`` (predict, evaluate, a direction=both pair)
    come from one function: the same model gives the same scores, row i for text i."""
    from types import SimpleNamespace
    from ulmfit.inference import Classifier, docs_scores
    from ulmfit.precision import scoring_in_fp32
    learn, _ = _tiny_classifier_learner()
    rng = np.random.default_rng(2)
    lengths = rng.integers(3, 40, size=12)
    docs = Docs(rng.integers(2, 50, size=int(lengths.sum())), np.concatenate([[0], np.cumsum(lengths)]), ["a"] * 12)
    with scoring_in_fp32(learn):  # as classify scores (a loaded model predicts in fp32)
        scores = docs_scores(learn, docs, 5, 10)
        order = rng.permutation(12)  # the loader sorts by length: rows still follow the input
        np.testing.assert_allclose(docs_scores(learn, docs.subset(order), 5, 10), scores[order], atol=1e-5)
    assert scores.shape == (12, 2)
    clf = Classifier(SimpleNamespace(model_info={"head": {"bptt": 10}}), learn.model, [], ["a", "b"], False)
    np.testing.assert_allclose(clf.predict_docs(docs, 5), scores, atol=1e-5)


def test_classification_batches_are_made_without_worker_processes():
    """fastai's SortedDL forks a batch worker per core by default; under data-parallel training (gloo threads
    running) a forked worker could deadlock at start and hang the job (seen 1 run in 6 of test_distributed)."""
    import multiprocessing
    from ulmfit.data.loaders import clas_loader
    lengths = np.array([5, 9, 3, 12, 7, 4])
    docs = Docs(np.arange(2, 2 + lengths.sum()), np.concatenate([[0], np.cumsum(lengths)]), ["a"] * 6)
    dl = clas_loader(docs, [0, 1] * 3, bs=2, bptt=4, shuffle=True, device=torch.device("cpu"))
    batches = iter(dl)
    x, y = next(batches)
    assert multiprocessing.active_children() == []  # no DataLoader worker was started
    assert x.shape[1] % 4 == 0 and y.shape == (2,)
    assert sum(len(b[1]) for b in [(x, y), *batches]) == 6


def test_batches_within_one_chunk_are_padded_to_their_longest_text():
    """Multi-chunk batches are padded to whole chunks (fastai issue #3379); a batch whose texts all fit in one
    chunk needs only its longest text's length: padding it to the chunk would multiply the LSTM's work."""
    from ulmfit.data.loaders import clas_loader
    lengths = np.array([5, 9, 3, 12, 7, 4, 30, 25])
    docs = Docs(np.arange(2, 2 + lengths.sum()), np.concatenate([[0], np.cumsum(lengths)]), ["a"] * 8)
    dl = clas_loader(docs, [0, 1] * 4, bs=2, bptt=20, shuffle=False, device=torch.device("cpu"))
    widths = sorted(x.shape[1] for x, _ in dl)
    assert widths == [4, 7, 12, 40]  # (4, 3) (7, 5) (12, 9) in one chunk each; (30, 25) in two whole chunks
    for x, _ in dl:  # every row's text starts at position 0 of a single-chunk batch, padding after it
        if x.shape[1] <= 20:
            assert (x[:, 0] != 1).all()


def test_default_parent_is_the_latest_fine_tuned_on_the_same_data(chain, tmp_path, mini_imdb, caplog):
    """classify <- lm_finetune: the newest entry fine-tuned on this corpus, not merely the newest; none fits: an
    error listing what there is; a named parent from other data: used, with a warning naming both corpora."""
    import json
    import shutil
    from ulmfit.stages.common import data_identity, find_parent
    from ulmfit.store.manifest import write_manifest
    root, _, ft, clas = chain
    assert clas.lineage["parent_data"]["same_as_this_run"] is True
    assert clas.lineage["data"]["source"].startswith("csv (")
    store_dir = tmp_path / "store"
    shutil.copytree(root / "store", store_dir)
    other = store_dir / "lm_finetune" / "ft_trec"  # a newer LM fine-tuned on other text
    shutil.copytree(store_dir / "lm_finetune" / "ft", other)
    lineage = json.loads((other / "lineage.json").read_text())
    lineage["data"].update(fingerprint="0" * 24, source="trec (data/trec)")
    lineage["created"] = "9999-01-01T00:00:00"
    (other / "lineage.json").write_text(json.dumps(lineage))
    write_manifest(other)  # as the store writes an entry: its files' checksums last
    store = Store(store_dir)
    assert store.latest("lm_finetune").name == "ft_trec"

    def identity(*overrides: str) -> dict:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=["stage=classify", *overrides])
        return data_identity(cfg.data, cfg.tokenizer)

    imdb = identity(*imdb_csv(mini_imdb))
    same = [e.name for e in store.entries("lm_finetune") if e.lineage["data"]["fingerprint"] == imdb["fingerprint"]]
    assert "ft" in same and find_parent(store, "lm_finetune", None, imdb).name == same[-1] != "ft_trec"
    unseen = tmp_path / "unseen.csv"
    unseen.write_text("text,label\ngood,pos\nbad,neg\n")
    with pytest.raises(UsageError, match="No lm_finetune entry .* was trained on this data") as e:
        find_parent(store, "lm_finetune", None, identity("data=csv", f"data.files.train={unseen}"))
    assert "ft (csv (" in str(e.value) and "ft_trec (trec (data/trec))" in str(e.value) and "stage.parent=" in str(e.value)
    with caplog.at_level("WARNING", logger="ulmfit.stages.common"):
        assert find_parent(store, "lm_finetune", "ft_trec", imdb).name == "ft_trec"
    assert "trained on trec (data/trec), this run reads csv (" in caplog.text
