"""How long the quickstart needs to train, chosen on validation: LM fine-tuning epochs and the classifier's
unfreezing phases and final epochs, scored on TREC's validation questions (the test is not looked at), and each
recipe's training time on a CPU without bf16 estimated from one epoch of each kind timed under the AVX2 caps
(``ulmfit.emulation``: this CPU is not an AVX2 machine, and its figures say so).
Writes experiments/results/quickstart_length.{md,csv} and quickstart_length_epochs.{md,csv}.

    python -m experiments.quickstart_length --home /tmp/qlen                       # the default recipes
    python -m experiments.quickstart_length --home /tmp/qlen --recipes 10:4:4,6:4:4  # LM epochs:phases:final epochs

A recipe ``L:P:F`` is the quickstart's steps (``data=trec_sample``, bs 32; the shipped LM fine-tuned on the train
questions) with ``train.epochs=L`` for the LM, then the classifier with ``train.unfreeze_phases=P`` partial
phases of one epoch (the head, then one more layer group each; 4 = every group, today's) and
``train.epochs=F`` with all groups; ``10:4:4`` is today's quickstart. Validation runs train at
``train.precision=auto`` (bf16 on a CPU with bf16 instructions), one seed. Timing: one LM epoch and a classifier
with every phase one epoch long, each in a fresh process under the caps (fp32); fastai's per-epoch times (their
log line, whole seconds, validation included), scaled by the process's CPU / wall seconds (the cores may be shared),
times each recipe's epochs give its estimate, an upper bound where ``train.patience`` stops a phase early.
The steps run through ``experiments.common.run_recipe``: an entry that exists is reused, an interrupted run
continues. A timing run's output goes to <home>/logs/<name>.log, which its epoch times are read from; the others'
to <home>/quickstart_length.log.
"""

from __future__ import annotations

import argparse
import math
import re
import resource
from pathlib import Path

from experiments.common import (Step, append_result, entry_lineage, entry_metrics, hardware, result_rows,
                                run_recipe, stamp)
from ulmfit.emulation import AVX2_ENV

STEP = {"data": "trec_sample", "train.bs": 32}  # the quickstart's, for both steps
LM = {"stage.parent": "general-lm", "stage.lm_parts": ["train"], **STEP}
TODAY = "10:4:4"
RECIPES = f"{TODAY},4:2:2,4:4:4"
EPOCH_LINE = re.compile(r"(?:phase (\d+)/\d+, )?epoch \d+/\d+: .*time (\d+):(\d+)")


def children_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # of the finished (waited-for) children
    return r.ru_utime + r.ru_stime


def epoch_seconds(home: Path, name: str) -> list[tuple[int, int]]:
    """(phase from 1, seconds) of every epoch in the run's log, as fastai timed it (training + validation)."""
    text = (home / "logs" / f"{name}.log").read_text()
    return [(int(p or 1), 60 * int(m) + int(s)) for p, m, s in EPOCH_LINE.findall(text)]


def parse(recipe: str) -> tuple[int, int, int]:
    lm, phases, final = (int(x) for x in recipe.split(":"))
    return lm, phases, final


def lm_name(tag: str, epochs: int) -> str:
    return f"{tag}-lm{epochs}"


def clas_name(tag: str, recipe: str) -> str:
    lm, phases, final = parse(recipe)
    return f"{lm_name(tag, lm)}-p{phases}e{final}"


def plan(recipes: list[str], tag: str) -> list[Step]:
    """An LM per number of LM epochs the recipes ask for, then each recipe's classifier on its LM."""
    lms = [Step("lm_finetune", lm_name(tag, lm), {**LM, "train.epochs": lm})
           for lm in dict.fromkeys(parse(r)[0] for r in recipes)]
    clas = [Step("classify", clas_name(tag, r), {**STEP, "stage.parent": lm_name(tag, lm),
                                                "train.unfreeze_phases": phases, "train.epochs": final})
            for r in recipes for lm, phases, final in [parse(r)]]
    return lms + clas


def timing_steps(tag: str, parent: str) -> dict[str, Step]:
    """One LM epoch, and a classifier on LM ``parent`` with every phase one epoch long (no early stop)."""
    return {"lm": Step("lm_finetune", f"{tag}-avx2-lm", {**LM, "train.epochs": 1}),
            "clas": Step("classify", f"{tag}-avx2-clas", {**STEP, "stage.parent": parent, "train.epochs": 1,
                                                          "train.patience": None, "train.unfreeze_phases": 4})}


def timing(home: Path, steps: dict[str, Step]) -> dict[str, float]:
    """``steps`` (``timing_steps``) under the AVX2 caps; seconds per epoch kind, each scaled by its process's
    CPU / wall seconds (on shared cores the wall time counts the others' turns too)."""
    (home / "logs").mkdir(parents=True, exist_ok=True)
    per: dict[str, float] = {}
    for key, step in steps.items():
        stage, name = step.stage, step.name
        cpu = children_cpu_seconds()
        # one step per call: its process's CPU seconds, and a log of its own for epoch_seconds
        (wall,) = run_recipe(home, [step], log=home / "logs" / f"{name}.log", env=AVX2_ENV)
        cpu = children_cpu_seconds() - cpu
        lineage = entry_lineage(home, stage, name)
        if "EMULATED AVX2-only" not in (lineage["environment"].get("cpu_emulation") or ""):
            raise SystemExit(f"{stage}/{name} did not run under the AVX2 caps; remove it and rerun")
        if wall is None:  # reused: its rows are in the table already
            per.update({r["epoch"]: float(r["alone_s"]) for r in result_rows("quickstart_length_epochs")
                        if r["run"] == name})
            continue
        train_s = entry_metrics(home, stage, name)["train_seconds"]
        for phase, seconds in epoch_seconds(home, name):
            kind = "lm" if key == "lm" else f"phase{phase}"
            per[kind] = round(seconds * cpu / wall, 1)
            row = {"epoch": kind, "run": name, "date": stamp(), "precision": lineage["precision"], "wall_s": seconds,
                   "process_cpu_per_wall": round(cpu / wall, 2), "alone_s": per[kind],
                   "process_wall_s": round(wall), "process_train_s": round(train_s), "process_cpu_s": round(cpu)}
            append_result("quickstart_length_epochs", row, EPOCHS_TITLE, epochs_description(), key="epoch")
    return per


def estimate(per: dict[str, float], recipe: str) -> int:
    """Training seconds of ``recipe`` from one epoch of each kind: LM epochs, partial phases, final epochs."""
    lm, phases, final = parse(recipe)
    return round(lm * per["lm"] + sum(per[f"phase{k}"] for k in range(1, phases + 1)) + final * per["phase5"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs-quickstart-length"), help="ULMFIT_HOME")
    ap.add_argument("--recipes", default=RECIPES, help="comma-separated LM epochs:partial phases:final epochs "
                                                       f"(default {RECIPES}; {TODAY} is today's quickstart)")
    ap.add_argument("--tag", default="qlen", help="prefix of the entries")
    args = ap.parse_args()
    home, recipes = args.home.resolve(), [r.strip() for r in args.recipes.split(",")]
    home.mkdir(parents=True, exist_ok=True)
    run_recipe(home, plan(recipes, args.tag), log=home / "quickstart_length.log")
    per = timing(home, timing_steps(args.tag, lm_name(args.tag, parse(recipes[0])[0])))
    for recipe in recipes:
        lm, name = lm_name(args.tag, parse(recipe)[0]), clas_name(args.tag, recipe)
        lm_m, clas_m = entry_metrics(home, "lm_finetune", lm), entry_metrics(home, "classify", name)
        history = [round(100 * e["accuracy"], 1) for p in clas_m["phases"] for e in p["history"]]
        acc, n_valid = clas_m["valid_accuracy"], clas_m["n_valid"]
        row = {"recipe": recipe, "date": stamp(), "lm_epochs_run": lm_m["epochs"],
               "lm_valid_ppl": round(lm_m["valid_perplexity"], 1), "clas_epochs_run": len(history),
               "valid_acc_per_epoch": " ".join(map(str, history)), "kept": "phase {phase}, epoch {epoch}".format(
                   phase=clas_m["kept_epoch"]["phase"] + 1, epoch=clas_m["kept_epoch"]["epoch"] + 1),
               "valid_acc": round(100 * acc, 1), "valid_acc_se": round(100 * math.sqrt(acc * (1 - acc) / n_valid), 1),
               "valid_loss": round(clas_m["valid_loss"], 4), "n_valid": n_valid,
               "precision": entry_lineage(home, "classify", name)["precision"],
               "train_s": round(lm_m["train_seconds"] + clas_m["train_seconds"]),
               "est_avx2_train_s": estimate(per, recipe)}
        print(append_result("quickstart_length", row, TITLE, description(), key="recipe"))


TITLE = "Quickstart length, chosen on validation"
EPOCHS_TITLE = "Quickstart epochs timed under the AVX2 caps"


def description() -> str:
    return (f"`python -m experiments.quickstart_length`; this header was last written on {hardware()}. "
            "recipe = LM epochs : partial unfreezing phases : final epochs (10:4:4 is today's quickstart). "
            "lm_epochs_run / clas_epochs_run: epochs trained (train.patience may stop early); valid_acc_per_epoch: "
            "the classifier's validation accuracy after each epoch of every phase; kept: the epoch whose weights "
            "are kept (best validation loss); valid_acc_se: its binomial standard error on n_valid questions; "
            "train_s: LM + classifier training seconds of these runs (precision, one torch thread, cores shared "
            "with other runs); est_avx2_train_s: the same recipe's training estimated from "
            "quickstart_length_epochs.md (one epoch of each kind under the AVX2 caps). The test set is not used.")


def epochs_description() -> str:
    return (f"`python -m experiments.quickstart_length`: one epoch of each kind, each run in a fresh process under "
            f"the AVX2 caps of `ulmfit.emulation` ({' '.join(f'{k}={v}' for k, v in AVX2_ENV.items())}); this "
            f"header was last written on {hardware()} (the caps are set in the runs, not in this process: each "
            "entry's lineage records them, and the script checks it). lm: one LM fine-tuning epoch on the TREC "
            "train questions (bs 32); phaseK: one classifier epoch with the top K of 5 layer groups trainable "
            "(phase5: all, the final phase's epochs). wall_s: fastai's per-epoch time (training + validation, whole "
            "seconds), one torch thread on cores shared with other runs; alone_s = wall_s x the process's CPU / "
            "wall seconds (process_cpu_per_wall): the epoch as it would take with the core to itself, the "
            "figure the estimates use. process_*: the whole stage process (imports, data, evaluation, the "
            "entry), its training, its CPU time.")


if __name__ == "__main__":
    main()
