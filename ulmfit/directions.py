"""Forward and backward models (``direction=forward | backward | both``) and the one convention that pairs them.

A backward model reads every text right to left (fastai's ``backwards``; its ``model.json`` says
``"backwards": true``). The paper's best figures average the class probabilities of a forward and a backward
classifier. The backward model of ``<name>`` is ``<name>-bwd``, in the store (``lm_finetune/ft`` and
``lm_finetune/ft-bwd``) as among the shipped LMs (``general-lm`` and ``general-lm-bwd``): ``direction=both`` runs
lm_finetune and classify once per direction, as ``<run_name>`` from the forward parent and ``<run_name>-bwd``
from that parent's backward model, and has predict and evaluate average each named classifier with its backward one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ulmfit.errors import UsageError
from ulmfit.options import DIRECTIONS

if TYPE_CHECKING:  # light to import: the experiment scripts name entries with it before torch is loaded
    from ulmfit.store import Entry, Store

FORWARD, BACKWARD, BOTH = DIRECTIONS
SUFFIX = "-bwd"
BOTH_STAGES = ("lm_finetune", "classify", "predict", "evaluate")  # the stages that take direction=both


def backward_name(name: str) -> str:
    """The name of the backward model beside forward model ``name``."""
    return f"{name}{SUFFIX}"


def is_backward(entry: Entry) -> bool:
    """Does ``entry``'s model read right to left? (entries without a model, e.g. baselines, read forward)"""
    return (entry.path / "model.json").is_file() and bool(entry.model_info.get("backwards", False))


def of_direction(entries: Sequence[Entry], backwards: bool) -> list[Entry]:
    """The entries that read in that direction, in their order."""
    return [e for e in entries if is_backward(e) == backwards]


def backwards_flag(cfg: Any, stage: str) -> bool:
    """``direction`` as a model's ``backwards`` flag, for a run of one model; ``both`` is refused in a stage that
    does not take it."""
    if cfg.direction == BOTH:
        raise UsageError(f"direction=both runs {', '.join(BOTH_STAGES)}; stage={stage} makes one model: run it with "
                         f"direction=forward, then with direction=backward run_name=<name>{SUFFIX}.")
    return cfg.direction == BACKWARD


def check_direction(parent: Entry, backwards: bool) -> None:
    """Stop when ``parent`` reads the other way than this run."""
    if is_backward(parent) != bool(backwards):
        this, other = (BACKWARD, FORWARD) if backwards else (FORWARD, BACKWARD)
        raise UsageError(f"{parent.ref} is a {other} model but this run has direction={this}; pick a {this} "
                         f"parent (the backward model of <name> is <name>{SUFFIX}).")


def backward_of(store: Store, entry: Entry) -> Entry:
    """The backward model beside forward ``entry``; a missing one stops the run, naming it and how to make it."""
    name = backward_name(entry.name)
    try:
        sibling = store.get(entry.stage, name)  # a store entry, or a shipped LM
    except UsageError:
        if entry.shipped:
            raise UsageError(f"There is no {entry.stage}/{name}, the backward model beside the shipped {entry.ref}: "
                             f"export it with `python -m experiments.general_lm --backwards --ship` (in the "
                             f"repository), or use direction=forward.") from None
        raise UsageError(f"There is no {entry.stage}/{name}, the backward model beside {entry.ref}, in {store.root}: "
                         f"make it with `python -m ulmfit stage={entry.stage} direction=backward run_name={name}` and "
                         f"{entry.ref}'s other options, or use direction=forward.") from None
    sibling.check()
    check_direction(sibling, True)
    return sibling
