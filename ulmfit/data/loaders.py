"""fastai DataLoaders over numericalized documents."""

from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
from fastai.data.core import DataLoaders
from fastai.torch_core import TensorCategory
from fastai.text.data import LMDataLoader, SortedDL, TensorText, pad_input_chunk

from ulmfit.data.tokens import Docs

PAD_ID = 1  # fastai's vocab puts xxpad at index 1


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


def clas_loader(docs: Docs, targets: Sequence[int], bs: int, bptt: int, shuffle: bool, device: torch.device,
                backwards: bool = False) -> SortedDL:
    """fastai's ``SortedDL`` (similar lengths batched together) with ``pad_input_chunk`` padding, as
    ``TextDataLoaders`` builds for classification; padding goes first, in ``bptt`` chunks, as BPT3C expects."""
    items = [(TensorText(t), TensorCategory(y)) for t, y in zip(as_tensors(docs, backwards), targets)]
    return SortedDL(items, res=docs.lengths.tolist(), bs=bs, shuffle=shuffle, device=device,
                    before_batch=partial(pad_input_chunk, pad_idx=PAD_ID, pad_first=True, seq_len=bptt))


def clas_dataloaders(train: Docs, valid: Docs, classes: Sequence[str], vocab: Sequence[str], bs: int, bptt: int,
                     device: torch.device, backwards: bool = False) -> DataLoaders:
    index = {c: i for i, c in enumerate(classes)}
    dls = DataLoaders(clas_loader(train, [index[c] for c in train.labels], bs, bptt, True, device, backwards),
                      clas_loader(valid, [index[c] for c in valid.labels], bs, bptt, False, device, backwards),
                      device=device)
    dls.vocab = [list(vocab), list(classes)]
    return dls
