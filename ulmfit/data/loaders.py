"""fastai DataLoaders: LM batches streamed from the token cache, classification batches from documents."""

from __future__ import annotations

import random
from functools import partial
from typing import Iterator, Sequence

import numpy as np
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.torch_core import TensorCategory
from fastai.text.data import LMTensorText, SortedDL, TensorText, pad_chunk

from ulmfit.data.streams import TokenStream, check_lm_size
from ulmfit.data.tokens import Docs
from ulmfit.tasks import Task

PAD_ID = 1  # fastai's vocab puts xxpad at index 1


def as_tensors(docs: Docs, backwards: bool = False) -> list[torch.Tensor]:
    """One LongTensor per document (views of the flat array; reversed copies for a backward LM)."""
    flat = torch.as_tensor(docs.ids, dtype=torch.long)
    out = [flat[s:e] for s, e in zip(docs.offsets[:-1].tolist(), docs.offsets[1:].tolist())]
    return [t.flip(0) for t in out] if backwards else out


def to_device_async(batch: torch.Tensor, device: torch.device | None) -> torch.Tensor:
    """On a GPU: the batch copied from pinned memory without waiting for it, so the host gathers the next batch
    while the GPU trains on this one (fastai's own copy, from pageable memory, blocks). Elsewhere: unchanged."""
    if device is None or torch.device(device).type != "cuda":
        return batch
    return batch.pin_memory().to(device, non_blocking=True)


class StreamLMDataLoader(DataLoader):
    """fastai's ``LMDataLoader`` batching, read from a ``TokenStream`` instead of a list of tensors.

    Same layout as fastai: the (shuffled) documents are concatenated, cut into ``bs`` rows of ``bl``
    tokens, and batch ``b`` is columns ``b*seq_len .. b*seq_len+seq_len`` of every row (targets shifted by
    one). A batch is gathered with one vectorised read of ``bs * (seq_len + 1)`` tokens, so memory does
    not grow with the corpus; without shuffling the batches equal ``LMDataLoader``'s token for token.
    ``bs`` and ``seq_len`` have no defaults here: they are ``train.bs`` and ``train.bptt`` (conf/train/).
    """

    n_inp = 1

    def __init__(self, stream: TokenStream, bs: int, seq_len: int, shuffle: bool = False,
                 backwards: bool = False, device: torch.device | None = None, **kwargs):
        self.stream, self.seq_len, self.backwards = stream, seq_len, backwards
        corpus = (stream.n_tokens - 1) // bs * bs  # the last token is only a target; the tail < bs is dropped
        self.bl = corpus // bs
        self.n_batches = self.bl // seq_len + int(self.bl % seq_len != 0)
        self.last_len = self.bl - (self.n_batches - 1) * seq_len
        self.order = np.arange(len(stream))
        self.ends = stream.ends(self.order)
        self._resume: tuple[np.ndarray, int] | None = None  # (document order, first batch) of the next epoch
        super().__init__(dataset=stream, bs=bs, shuffle=shuffle, indexed=True, n=self.n_batches * bs,
                         device=device, **kwargs)

    def resume_at(self, order: np.ndarray, batch: int) -> None:
        """Make the next pass continue an interrupted epoch: that epoch's document order, from batch ``batch``
        (a mid-epoch checkpoint); later passes shuffle and start at batch 0 as usual."""
        self._resume = (np.asarray(order, dtype=np.int64), int(batch))

    def shuffle_fn(self, idxs):
        if self._resume is not None:  # the interrupted epoch's order was drawn before the checkpoint
            self.order = self._resume[0]
            self.ends = self.stream.ends(self.order)
            return idxs
        # A new document order each epoch, drawn like fastai's LMDataLoader (``random.shuffle``), so a seeded
        # run sees the documents in the same order as stock fastai would.
        order = list(range(len(self.stream)))
        random.shuffle(order)
        self.order = np.asarray(order, dtype=np.int64)
        self.ends = self.stream.ends(self.order)
        return idxs

    def create_batches(self, samps):
        # Item i belongs to batch i // bs: all of them here, a share in a data-parallel process (DistributedDL).
        batches = sorted({int(i) // self.bs for i in samps})
        if self._resume is not None:
            batches, self._resume = [b for b in batches if b >= self._resume[1]], None
        rows = np.arange(self.bs, dtype=np.int64)[:, None] * self.bl
        for b in batches:
            sl = self.last_len if b == self.n_batches - 1 else self.seq_len
            positions = rows + b * self.seq_len + np.arange(sl + 1, dtype=np.int64)
            tokens = to_device_async(torch.from_numpy(self.stream.gather(positions, self.order, self.backwards,
                                                                         self.ends)), self.device)
            yield LMTensorText(tokens[:, :-1]), TensorText(tokens[:, 1:])

    def new(self, stream: TokenStream | None = None, **kwargs) -> "StreamLMDataLoader":
        kwargs = {"bs": self.bs, "seq_len": self.seq_len, "shuffle": self.shuffle, "backwards": self.backwards,
                  "device": self.device, **kwargs}
        return StreamLMDataLoader(stream if stream is not None else self.stream, **kwargs)


def lm_loader(stream: TokenStream, bs: int, bptt: int, shuffle: bool, device: torch.device,
              backwards: bool = False) -> StreamLMDataLoader:
    check_lm_size(stream, bs, "training" if shuffle else "evaluation")
    return StreamLMDataLoader(stream, bs=bs, seq_len=bptt, shuffle=shuffle, backwards=backwards, device=device)


def lm_dataloaders(train: TokenStream, valid: TokenStream, vocab: Sequence[str], bs: int, bptt: int,
                   device: torch.device, backwards: bool = False, eval_bs: int | None = None) -> DataLoaders:
    """Train (shuffled documents) and validation LM loaders, with ``dls.vocab`` set as fastai expects."""
    dls = DataLoaders(lm_loader(train, bs, bptt, True, device, backwards),
                      lm_loader(valid, eval_bs or bs, bptt, False, device, backwards), device=device)
    dls.vocab = list(vocab)
    return dls


def pad_to_whole_chunks(samples: list, seq_len: int, pad_idx: int = PAD_ID) -> list:
    """fastai's ``pad_input_chunk``, with a batch longer than one chunk padded to a multiple of ``seq_len``.

    ``SentenceEncoder`` feeds each ``seq_len`` chunk to the LSTM for the first rows that are not padding at the
    chunk's start, assuming those rows are a prefix of the (length-sorted) batch. ``pad_input_chunk`` pads to the
    longest row only, so a row whose text ended before the last chunk could sit above a shorter row that starts
    there, and the shorter row's text was never encoded (fastai issue #3379). With whole chunks every row's text
    reaches into the last chunk, the assumption holds, and a prediction no longer depends on its batch.
    A batch that fits in one chunk is padded to its longest row only: every row starts at position 0, so the
    problem cannot arise, and padding short texts (questions, titles) to a whole chunk would multiply the LSTM's
    work by up to ``seq_len`` / their length."""
    longest = max(len(s[0]) for s in samples)
    pad_len = longest if longest <= seq_len else -(-longest // seq_len) * seq_len
    return [(pad_chunk(s[0], pad_idx=pad_idx, pad_first=True, seq_len=seq_len, pad_len=pad_len), *s[1:])
            for s in samples]


class WholeBatchSortedDL(SortedDL):
    """fastai's ``SortedDL`` for training: every batch full (``drop_last``), and the ``len % bs`` texts that sit an
    epoch out drawn anew each epoch.

    fastai's ``shuffle_fn`` sorts chunks of ``50 * bs`` texts by length and always ends on the last chunk's
    shortest texts; on a set that fits one chunk (a few hundred labels) those are the same texts every epoch, so
    ``drop_last`` would never train on them and, without it, every epoch ends on a tiny batch that the head's
    BatchNorm normalises over a handful of samples. Same chunked length-sorting otherwise."""

    def shuffle_fn(self, idxs) -> Iterator[int]:
        perm = np.random.permutation(len(self.dataset))
        if self.drop_last:
            perm = perm[:len(perm) - len(perm) % self.bs]
        sz = self.bs * 50
        order = np.concatenate([sorted(perm[i:i + sz], key=lambda j: self.res[j], reverse=True)
                                for i in range(0, len(perm), sz)])
        batches = [order[i:i + self.bs] for i in range(0, len(order), self.bs)]
        longest = max(range(len(batches)), key=lambda b: self.res[batches[b][0]])  # first, as fastai does: the
        rest = [batches[b] for b in np.random.permutation(len(batches)) if b != longest]  # peak memory up front
        return iter(np.concatenate([batches[longest], *rest]))


def clas_loader(docs: Docs, targets: Sequence[int | torch.Tensor] | None, bs: int, bptt: int, shuffle: bool,
                device: torch.device, backwards: bool = False) -> SortedDL:
    """fastai's ``SortedDL`` (similar lengths batched together) with chunked first padding, as
    ``TextDataLoaders`` builds for classification (BPT3C), but a batch longer than one chunk is padded to whole
    chunks (``pad_to_whole_chunks``). ``shuffle``: a training loader (``WholeBatchSortedDL``: full batches only,
    unless the set is smaller than one batch). ``targets``: class indices, or one tensor per text
    (``Task.item_targets``); None for prediction (no targets, so fastai computes no loss).

    Batches are made in the training process (``num_workers=0``; fastai's default forks one worker per core).
    Padding in-memory tensors costs microseconds, while a forked worker copies the process and, in a
    data-parallel run, can deadlock on a lock held by a gloo thread at fork time."""
    texts = [TensorText(t) for t in as_tensors(docs, backwards)]
    items = [(t,) for t in texts] if targets is None else \
        [(t, y if isinstance(y, torch.Tensor) else TensorCategory(y)) for t, y in zip(texts, targets)]
    cls, extra = (WholeBatchSortedDL, {"drop_last": len(items) >= bs}) if shuffle else (SortedDL, {})
    return cls(items, res=docs.lengths.tolist(), bs=bs, shuffle=shuffle, device=device, num_workers=0,
               pin_memory=device is not None and torch.device(device).type == "cuda",  # faster copies to a GPU
               before_batch=partial(pad_to_whole_chunks, seq_len=bptt), **extra)


def clas_dataloaders(train: Docs, valid: Docs, classes: Sequence[str], vocab: Sequence[str], bs: int, bptt: int,
                     device: torch.device, backwards: bool = False, eval_bs: int | None = None,
                     task: Task = Task()) -> DataLoaders:
    """Training and validation loaders of labelled documents, their labels read as ``task`` reads them."""
    def targets(docs: Docs, part: str) -> list[torch.Tensor]:
        return task.item_targets(task.targets(docs.labels, classes, f"the {part} texts"))
    dls = DataLoaders(clas_loader(train, targets(train, "training"), bs, bptt, True, device, backwards),
                      clas_loader(valid, targets(valid, "validation"), eval_bs or bs, bptt, False, device, backwards),
                      device=device)
    dls.vocab = [list(vocab), list(classes)]
    return dls
