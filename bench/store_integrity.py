"""What the store's checksums cost: ``python -m bench.store_integrity``.

Writes a store entry whose weights are ~20 MB (a 5M-parameter module, the size of the shipped LM) and times, each
the median of ``--repeat`` runs, with the files in the page cache as they are right after writing or loading:

- recording: ``write_manifest`` (sha256 of every file of the entry), what ``Store.create`` adds to a write;
- checking: ``Entry.verify("model.safetensors")``, what loading the weights adds;
- for scale: reading those weights without the check (``safetensors.torch.load_file``), loading them through
  the store (``Entry.state_dict``, check included), and writing the whole entry.

The shipped LM (``ulmfit/pretrained/general-lm``, checked against its lineage's checksum) is timed the same way.
Prints a Markdown table; ``--json FILE`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file

import ulmfit
from ulmfit.store import WEIGHTS, Store
from ulmfit.store.manifest import write_manifest


def _median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(repeat: int = 7, params: int = 5_000_000) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store", shipped=ulmfit.SHIPPED_DIR)
        module = torch.nn.Linear(params // 1000, 1000, bias=False)
        names = iter(range(repeat))

        def write() -> None:
            with store.create("pretrain", f"e{next(names)}", {"parent": None}) as w:
                w.save_model(module)
                w.save_json("model.json", {"kind": "bench"})

        write_s = _median_seconds(write, repeat)
        entry = store.get("pretrain", "e0")
        size = (entry.path / WEIGHTS).stat().st_size
        shipped = store.get("pretrain", "general-lm")
        return {
            "weights_mb": round(size / 1e6, 1),
            "record_s": _median_seconds(lambda: write_manifest(entry.path), repeat),
            "verify_s": _median_seconds(lambda: entry.verify(WEIGHTS), repeat),
            "read_unchecked_s": _median_seconds(lambda: load_file(entry.path / WEIGHTS), repeat),
            "load_s": _median_seconds(entry.state_dict, repeat),
            "write_s": write_s,
            "shipped_mb": round((shipped.path / WEIGHTS).stat().st_size / 1e6, 1),
            "shipped_verify_s": _median_seconds(lambda: shipped.verify(WEIGHTS), repeat),
            "shipped_load_s": _median_seconds(shipped.state_dict, repeat),
            "repeat": repeat, "cpu": _cpu(), "torch_threads": torch.get_num_threads(),
        }


def _cpu() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    return f"{model}{', SHA extensions' if ' sha_ni' in info else ''}"


def report(r: dict) -> str:
    ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    rows = [("record the sha256 of every file (`write_manifest`, part of `Store.create`)", r["record_s"]),
            ("check the weights (`Entry.verify`, part of every load)", r["verify_s"]),
            ("read the weights without the check (`safetensors.torch.load_file`)", r["read_unchecked_s"]),
            ("load the weights, check included (`Entry.state_dict`)", r["load_s"]),
            ("write the whole entry, recording included (`Store.create`)", r["write_s"])]
    lines = [f"Entry with {r['weights_mb']} MB of weights on {r['cpu']}; median of {r['repeat']} runs, files in the "
             "page cache.", "",
             "| step | time |", "| --- | --- |", *[f"| {what} | {ms(s)} |" for what, s in rows],
             f"| the shipped LM ({r['shipped_mb']} MB): check its weights | {ms(r['shipped_verify_s'])} |",
             f"| the shipped LM: load its weights, check included | {ms(r['shipped_load_s'])} |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.store_integrity", description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    r = measure(args.repeat)
    print(report(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
