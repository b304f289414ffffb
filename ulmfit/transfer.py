"""Moving weights between stages through the store: vocabulary transfer and encoder loading."""

from __future__ import annotations

import torch
from fastai.text.learner import match_embeds

from ulmfit.errors import UsageError
from ulmfit.models import build_language_model, encoder_of
from ulmfit.store import Entry

ENCODER_WEIGHTS = "encoder.safetensors"


def check_direction(parent: Entry, backwards: bool) -> None:
    if bool(parent.model_info.get("backwards", False)) != bool(backwards):
        raise UsageError(f"{parent.ref} is a {'backward' if not backwards else 'forward'} model but this run has "
                         f"backwards={backwards}; pick a parent trained in the same direction.")


def transferred_lm_weights(parent: Entry, new_vocab: list[str]) -> dict[str, torch.Tensor]:
    """The parent LM's weights with its embedding re-indexed for ``new_vocab`` (fastai's ``match_embeds``):
    rows of tokens the parent knew are kept, new tokens get the mean embedding (and mean decoder bias)."""
    old = build_language_model(parent.model_info)
    parent.load_weights(old)
    return match_embeds(old.state_dict(), parent.vocab, list(new_vocab))


def load_encoder(parent: Entry, model: torch.nn.Module) -> None:
    """Load the parent's AWD-LSTM encoder into ``model`` (an LM or a classifier); a model built with another
    architecture or vocabulary size is refused by ``Entry.load_weights`` with the mismatching shapes."""
    parent.load_weights(encoder_of(model), ENCODER_WEIGHTS)  # every LM entry (pretrain, lm_finetune) has one
