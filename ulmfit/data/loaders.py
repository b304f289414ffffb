"""fastai DataLoaders over numericalized documents."""

from __future__ import annotations

from typing import Sequence

import torch
from fastai.data.core import DataLoaders
from fastai.text.data import LMDataLoader

from ulmfit.data.tokens import Docs


def as_tensors(docs: Docs, backwards: bool = False) -> list[torch.Tensor]:
    """One LongTensor per document (views of the flat array; reversed copies for a backward LM)."""
    flat = torch.as_tensor(docs.ids, dtype=torch.long)
    out = [flat[s:e] for s, e in zip(docs.offsets[:-1].tolist(), docs.offsets[1:].tolist())]
    return [t.flip(0) for t in out] if backwards else out


def lm_loader(docs: Docs, bs: int, bptt: int, shuffle: bool, device: torch.device,
              backwards: bool = False) -> LMDataLoader:
    """fastai's ``LMDataLoader``: documents concatenated into ``bs`` streams, cut into ``bptt`` windows."""
    items = as_tensors(docs, backwards)
    return LMDataLoader(items, lens=docs.lengths.tolist(), bs=bs, seq_len=bptt, shuffle=shuffle, device=device)


def lm_dataloaders(train: Docs, valid: Docs, vocab: Sequence[str], bs: int, bptt: int, device: torch.device,
                   backwards: bool = False, eval_bs: int | None = None) -> DataLoaders:
    """Train (shuffled documents) and validation LM loaders, with ``dls.vocab`` set as fastai expects."""
    dls = DataLoaders(lm_loader(train, bs, bptt, True, device, backwards),
                      lm_loader(valid, eval_bs or bs, bptt, False, device, backwards), device=device)
    dls.vocab = list(vocab)
    return dls
