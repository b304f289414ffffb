"""Import fastai's published WikiText-103 AWD-LSTM weights as a ``pretrain`` entry (GPU users skip days of
pretraining this way; the paper's recipe starts from them).

weights (.pth) + vocabulary (.pkl), from local files or -- with ``stage.download=true`` and a network -- from
fastai's ``URLs.WT103_FWD``/``WT103_BWD`` -> restricted loading (``ulmfit.weights``: nothing unpickled
that could run code) -> shapes checked against ``model=`` -> ``pretrain/<run>`` entry (safetensors, JSON),
which ``lm_finetune stage.parent=<run>`` uses like any pretrained LM.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ulmfit.errors import UsageError
from ulmfit.data.tokens import file_sha256
from ulmfit.directions import backwards_flag
from ulmfit.weights import fastai_language_model
from ulmfit.stages.common import lineage, open_store, save_entry
from ulmfit.store import Entry

log = logging.getLogger(__name__)
STAGE = "pretrain"  # the entry it writes is a pretrained LM like any other


def _source_files(cfg: DictConfig, backwards: bool) -> tuple[Path, Path]:
    st = cfg.stage
    folder = st.dir
    if st.download and not folder:
        from fastai.data.external import URLs, untar_data
        url = URLs.WT103_BWD if backwards else URLs.WT103_FWD
        log.info("Downloading %s with fastai untar_data", url)
        folder = untar_data(url)
    if folder:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise UsageError(f"stage.dir={folder} is not a folder; point it at the folder holding fastai's "
                             f"lstm_fwd.pth and itos_wt103.pkl.")
        found = {ext: sorted(folder.glob(f"*.{ext}")) for ext in ("pth", "pkl")}
        if not found["pth"] or not found["pkl"]:
            raise UsageError(f"{folder} needs one .pth (weights) and one .pkl (vocabulary) file, as fastai's "
                             f"WT103 archive has; or set stage.weights and stage.vocab.")
        return Path(st.weights or found["pth"][0]), Path(st.vocab or found["pkl"][0])
    if not st.weights or not st.vocab:
        raise UsageError("Set stage.weights=<lstm_fwd.pth> and stage.vocab=<itos_wt103.pkl> (or stage.dir=<folder "
                         "with both>, or stage.download=true with a network).")
    return Path(st.weights).expanduser(), Path(st.vocab).expanduser()


def run(cfg: DictConfig) -> Entry:
    backwards = backwards_flag(cfg, STAGE)
    store, name = open_store(cfg, STAGE)
    weights_path, vocab_path = _source_files(cfg, backwards)
    model, vocab, info = fastai_language_model(weights_path, vocab_path, cfg.model, backwards)
    log.info("import_wt103: %s (%d tokens, %d/%d/%d)", weights_path, len(vocab), cfg.model.emb_sz, cfg.model.n_hid,
             cfg.model.n_layers)
    source = {"weights": str(weights_path), "weights_sha256": file_sha256(weights_path), "vocab": str(vocab_path),
              "vocab_sha256": file_sha256(vocab_path)}
    metrics = {"imported": True, "vocab_size": len(vocab), "n_parameters": sum(p.numel() for p in model.parameters())}
    return save_entry(store, STAGE, name, cfg, model=model, vocab=vocab, info=info, metrics=metrics,
                      lineage=lineage(cfg, None, imported_from=source))
