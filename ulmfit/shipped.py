"""The general-domain language model that ships inside the package, as fastai's ``pretrained=True`` ships WT103.

``ulmfit/pretrained/<name>/`` is an ordinary ``pretrain`` store entry (weights in fp16 to keep the wheel small,
vocab, model.json, config, metrics, lineage with provenance). Every store sees it as a read-only ``pretrain``
entry, older than anything trained locally: ``stage=lm_finetune`` on a fresh install (no pretrain entry in the
store) starts from it, ``stage.parent=<name>`` picks it by name, and a local entry of the same name wins.

``python -m ulmfit.shipped pretrain/<run> --name <name>`` exports a trained entry into that form (this is how
the shipped one was made; ``python -m experiments.general_lm --ship`` runs it). The lineage it ships names the corpus
by name and content (``corpus``), not by the folder it lay in on the machine that trained it. Exporting a shipped
entry again (to rewrite its lineage) keeps its weights byte for byte.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from typing import Any

from safetensors.torch import save_file

import ulmfit
from ulmfit.data.readers import make_reader
from ulmfit.data.tokens import file_sha256
from ulmfit.errors import UsageError
from ulmfit.files import atomic_path, sha256_file
from ulmfit.stages.common import data_identity
from ulmfit.store import LINEAGE, SHIPPED_STAGE as STAGE, WEIGHTS, Entry
from ulmfit.store.manifest import write_manifest

COPIED = ("vocab.json", "model.json", "config.yaml", "metrics.json")


def shipped_dir() -> Path:
    """Where shipped entries live: ``ulmfit.SHIPPED_DIR``, read when called (tests point it elsewhere)."""
    return ulmfit.SHIPPED_DIR


def corpus(entry: Entry) -> dict[str, Any]:
    """The corpus ``entry`` was trained on, by name and content: the name of its folder (or portable token file) and
    the sha256 of every file its reader reads (``sha256sum`` prints the same). The files are found where the entry's
    config says and must be the ones it was trained on (its data fingerprint), or nothing is exported."""
    cfg = entry.config()
    data = cfg.data
    found = data_identity(data, cfg.tokenizer)["fingerprint"]  # stops, naming it, where a file is missing
    if found != entry.lineage["data"]["fingerprint"]:
        raise UsageError(f"The corpus at {data.get('tokens') or data.get('root')} is not the one {entry.ref} was "
                         f"trained on (data fingerprint {found}, the entry's {entry.lineage['data']['fingerprint']}); "
                         f"export it where its training corpus is.")
    files = [Path(data.tokens)] if data.get("tokens") else make_reader(data).files()
    where = Path(data.tokens) if data.get("tokens") else Path(data.root) if data.get("root") else files[0]
    return {"name": where.name, "files": {f.name: file_sha256(f) for f in files}}


def export(entry_path: Path, name: str, dest: Path | None = None) -> Path:
    """Write the pretrain entry at ``entry_path`` as shipped entry ``name``: floating-point weights in fp16,
    the entry's files (checked against its manifest), its lineage with what was exported from where and its corpus
    by name and sha256 (``corpus``) instead of the path it was read from, and a manifest of the new files. Returns
    the new entry's folder (an older one of that name is replaced)."""
    entry = Entry(STAGE, entry_path.name, entry_path)
    lineage = entry.lineage
    data = {**lineage["data"], "corpus": corpus(entry)}
    data["source"] = f"{data['format']} ({data['corpus']['name']})"  # not the folder on the training machine
    out = (dest or shipped_dir()) / name
    with atomic_path(out, directory=True) as tmp:
        weights = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in entry.state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS), metadata={"format": "pt"})
        for f in COPIED:
            entry.verify(f)
            shutil.copy2(entry_path / f, tmp / f)
        origin = (lineage.get("shipped") or {}).get("from", entry.ref)  # a shipped entry exported again: its origin
        lineage.update(data=data, shipped={"from": origin, "name": name, "dtype": "float16",
                                           "weights_sha256": sha256_file(tmp / WEIGHTS),
                                           "weights_bytes": (tmp / WEIGHTS).stat().st_size})
        (tmp / LINEAGE).write_text(json.dumps(lineage, indent=2) + "\n", encoding="utf-8")
        write_manifest(tmp)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ulmfit.shipped", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("entry", type=Path, help="the folder of a pretrain entry (e.g. store/pretrain/<run>)")
    ap.add_argument("--name", required=True, help="the shipped entry's name (stage.parent=<name>)")
    ap.add_argument("--dest", type=Path, default=None, help=f"default: {ulmfit.SHIPPED_DIR}")
    args = ap.parse_args(argv)
    out = export(args.entry, args.name, args.dest)
    print(f"{out}: {sum(p.stat().st_size for p in out.iterdir()) / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
