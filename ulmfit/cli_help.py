"""``python -m ulmfit --help``: the stages, experiments and config groups, each with the one-line description
its YAML file opens with (so the help cannot drift from the configs), and a few real commands."""

from __future__ import annotations

from pathlib import Path

from ulmfit.config import CONF_DIR

WIDTH = 115
# Groups in the order a user meets them; hydra/* are Hydra's own groups that we add options to.
GROUPS = ("stage", "experiment", "data", "model", "train", "logger", "paths", "hydra/launcher", "hydra/sweeper")
# Keys listed after their group, each with the comment its line carries in conf/<group>/<file>: (file, keys, heading)
KEYS = {"data": ("csv.yaml", ("text_cols", "task", "label_delim", "tokenizer", "sp_vocab_size"),
                 "data options (data=csv; the tokenizer's in every data=...)")}
EXAMPLES = """\
  python -m ulmfit experiment=quickstart                               # the whole pipeline on the embedded sample
  python -m ulmfit stage=lm_finetune data=csv data.files.train=my.csv  # fine-tune the shipped LM on your texts
  python -m ulmfit stage=classify data=csv data.files.train=my.csv     # ... then a classifier on its encoder
  python -m ulmfit stage=probe data=csv data.files.train=my.csv        # a linear probe of that encoder
  python -m ulmfit stage=classify data=csv data.files.train=my.csv direction=both  # + backward, and their ensemble
  python -m ulmfit stage=classify data=trec data.root=../shared/data/trec
  python -m ulmfit stage=predict stage.input=new.csv stage.output=preds.csv stage.keep_columns=[id]
  python -m ulmfit -m stage=lm_finetune train.lr=1e-3,4e-3             # a sweep: one store entry per job
  python -m ulmfit.store --compare lm_finetune                         # the sweep's overrides and metrics
  python -m ulmfit stage=classify train.epochs=3 --cfg job --resolve   # print the composed config"""


def describe(path: Path) -> str:
    """The one-line summary a config file opens with (after any ``# @package`` line)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# @package"):
            continue
        text = line.lstrip("#").strip() if line.startswith("#") else ""
        return text if len(text) <= WIDTH - 25 else text[:WIDTH - 26].rstrip() + "…"
    return ""


def keys(group: str) -> list[tuple[str, str]]:
    """(``group.key``, the comment on its line) of the keys ``KEYS`` lists for ``group``."""
    if group not in KEYS:
        return []
    filename, names, _ = KEYS[group]
    comments = {}
    for line in (CONF_DIR / group / filename).read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        if value and not line.startswith((" ", "#")):  # a top-level key
            comments[key] = value.partition("#")[2].strip()
    return [(f"{group}.{name}", comments[name]) for name in names]


def options(group: str) -> list[tuple[str, str]]:
    """(option name, description) of every config file of ``group``."""
    return [(p.stem, describe(p)) for p in sorted((CONF_DIR / group).glob("*.yaml"))]


def render() -> str:
    lines = ["usage: python -m ulmfit [-m] stage=<stage> | experiment=<recipe> [group=option] [key=value ...]",
             "",
             "ULMFiT on fastai: pretrain a general-domain AWD-LSTM, fine-tune it on your texts, train a classifier.",
             "Runs write entries to the store (paths.store); the next stage finds its parent there by name."]
    for group in GROUPS:
        heading = {"stage": "stages (stage=...)", "experiment": "experiments: named recipes (experiment=...)"}.get(
            group, f"{group}=...")
        lines += ["", heading]
        lines += [f"  {name:<22} {text}" for name, text in options(group)]
        if group_keys := keys(group):
            lines += ["", KEYS[group][2]]
            lines += [f"  {name:<22} {text}" for name, text in group_keys]
    lines += ["", "examples:", EXAMPLES, "",
              "Any key can be set: key=value (e.g. train.lr=4e-3 train.epochs=2 seed=7); add a key with +key=value.",
              "direction=both: lm_finetune/classify train <run_name> and <run_name>-bwd (from the parent's -bwd model) and",
              "report their averaged ensemble; predict/evaluate average each named classifier with its -bwd model.",
              "Hydra's own options: --hydra-help. Bad values stop the run before any work, with exit code 2."]
    return "\n".join(lines)
