"""Build what a GPU session carries: the wheels the GPU image lacks, and the corpora as portable token files.

The GPU machine's image has torch, numpy, pandas, scikit-learn, safetensors and accelerate (and what they
require), but neither fastai & co. nor spaCy, and it cannot reach a package index; a call to it carries at most
64 MiB. So the corpora are tokenized here (through the token cache: a hit when ``--home`` holds it) and shipped
as token ids (``stage=export_tokens``), and the wheels are exactly the packages ``python -m ulmfit`` imports that
the image lacks (fastai & co., Hydra), pinned to the versions of this environment, for CPython 3.12::

    python -m experiments.gpu_payload --out .gpu --home /work/runs       # then: bash experiments/gpu_session.sh

writes ``<out>/wheels/*.whl`` and ``<out>/corpora/{imdb,wiki-gutenberg-5m,wikitext2}.tokens``, prints each size,
and exits 2 when the whole exceeds ``--limit-mib``. It also prints how the payload and the working tree (which
travels with every call) split into calls of at most ``--call-mib`` each.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from experiments.common import REPO, SHARED_DATA
from ulmfit.errors import UsageError

MIB = 2 ** 20
PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


@dataclass(frozen=True)
class Wheel:
    """A package to carry: ``version`` None pins the one installed here."""

    name: str
    why: str
    version: str | None = None
    sdist: bool = False  # no wheel on the index: build one here (pure Python)


# Every distribution `python -m ulmfit` imports (tests/test_gpu_payload.py checks this against a fresh
# interpreter's sys.modules) that the image lacks, with the reason it is needed.
WHEELS: tuple[Wheel, ...] = (
    Wheel("fastai", "the training loop, AWD-LSTM, callbacks"),
    Wheel("fastcore", "fastai's foundation"),
    Wheel("fasttransform", "fastai's transforms"),
    Wheel("plum-dispatch", "fasttransform's dispatch"),
    Wheel("beartype", "plum imports beartype.door"),
    Wheel("fastprogress", "fastai's progress bars; 1.1+ imports python-fasthtml and its web stack", "1.0.3"),
    Wheel("fastdownload", "fastai.data.external imports it"),
    Wheel("hydra-core", "the CLI"),
    Wheel("omegaconf", "configs"),
    Wheel("antlr4-python3-runtime", "omegaconf's grammar (only an sdist on PyPI)", "4.9.3", sdist=True),
)

# What the image holds of what we import or our wheels require (the device library's KINDS.md lists the image's
# packages, read 2026-11-17): torch, numpy, pandas, scikit-learn, safetensors, accelerate, and fastai's
# matplotlib, pillow, requests, rich, ... Carrying them would triple the wheels' size for nothing.
IMAGE = frozenset({
    "torch", "numpy", "pandas", "scikit-learn", "safetensors", "accelerate", "torchvision",
    "filelock", "typing-extensions", "sympy", "networkx", "jinja2", "fsspec", "setuptools", "triton",  # torch
    "python-dateutil", "pytz", "tzdata", "six",                           # pandas
    "scipy", "joblib", "threadpoolctl", "narwhals",                       # scikit-learn
    "packaging", "psutil", "pyyaml", "huggingface-hub", "tqdm",           # accelerate
    "matplotlib", "contourpy", "cycler", "fonttools", "kiwisolver", "pillow", "pyparsing",  # fastai.imports
    "requests", "urllib3", "certifi", "charset-normalizer", "idna", "cloudpickle",          # fastai
    "rich", "markdown-it-py", "mdurl", "pygments", "attrs",              # plum; omegaconf (optional)
})

# Required by a carried package but neither carried nor in the image: never imported on the training path.
NOT_NEEDED = {
    "spacy": "tokenization happens where the corpora are exported; portable token files need no spaCy",
    "python-fasthtml": "fastprogress 1.1+ only; 1.0.3 is carried",
}


@dataclass(frozen=True)
class Corpus:
    """A portable token file to export: ``overrides`` compose its data config; ``max_tokens`` cuts its train part."""

    name: str
    overrides: tuple[str, ...]
    max_tokens: int | None = None


WIKI_TOKENS = 5_000_000  # the pretraining subset conf/experiment/imdb_gpu.yaml reads (wiki-gutenberg-5m.tokens)


def corpora(shared: Path, wiki_tokens: int) -> list[Corpus]:
    """What the GPU experiment reads (conf/experiment/imdb_gpu.yaml) and tests/gpu_checks.py trains on."""
    return [Corpus("imdb", ("data=imdb", f"data.root={shared / 'imdb'}")),
            Corpus(f"wiki-gutenberg-{wiki_tokens / 1e6:g}m",
                   ("data=wiki_gutenberg", f"data.root={shared / 'wiki-gutenberg'}"), wiki_tokens),
            Corpus("wikitext2", ("data=wikitext2", f"data.root={shared / 'wikitext-2'}"))]


# ---------------------------------------------------------------------------------------------------
def canonical(name: str) -> str:
    """PEP 503 name: how wheel files and requirements are compared."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(wheels: Iterable[Wheel] = WHEELS) -> dict[str, str]:
    """``{name: version}`` to download: the wheel's own pin, else the version installed here."""
    out = {}
    for w in wheels:
        try:
            out[w.name] = w.version or importlib.metadata.version(w.name)
        except importlib.metadata.PackageNotFoundError:
            raise UsageError(f"{w.name} is not installed here, so its version cannot be pinned: pip install "
                             f"{w.name}, or give it a version in experiments/gpu_payload.py.") from None
    return out


def download_commands(folder: Path, wheels: Iterable[Wheel] = WHEELS) -> list[list[str]]:
    """The pip commands that fetch the wheels into ``folder`` (compiled ones for CPython 3.12 on manylinux)."""
    wheels = list(wheels)
    pinned = pins(wheels)
    pip = [sys.executable, "-m", "pip"]
    target = ["--no-deps", "--python-version", PYTHON, "-d", str(folder)]
    binary = ["--only-binary=:all:", "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)]]
    spec = lambda ws: [f"{w.name}=={pinned[w.name]}" for w in ws]  # noqa: E731
    cmds = [pip + ["download", *target, *binary, *spec([w for w in wheels if not w.sdist])]]
    if built := [w for w in wheels if w.sdist]:
        cmds.append(pip + ["wheel", "--no-deps", "-w", str(folder), *spec(built)])
    return cmds


def wheel_name(path: Path) -> str:
    return canonical(path.name.split("-")[0])


def requirements(wheel: Path) -> list[str]:
    """The requirements a wheel declares for CPython 3.12 on Linux x86_64 without extras (its METADATA)."""
    from packaging.requirements import Requirement
    env = {"python_version": PYTHON, "python_full_version": f"{PYTHON}.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode("utf-8").splitlines()
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]
    return [canonical(r.name) for r in reqs if r.marker is None or r.marker.evaluate(env)]


def unmet(wheels: Iterable[Path]) -> dict[str, list[str]]:
    """``{requirement: [carried wheels that need it]}`` for requirements neither carried, in the image, nor known
    to be unused: a new dependency of a pinned package shows up here instead of as an ImportError on the GPU."""
    wheels = list(wheels)
    have = {wheel_name(w) for w in wheels} | {canonical(n) for n in IMAGE} | set(NOT_NEEDED)
    out: dict[str, list[str]] = {}
    for w in wheels:
        for req in requirements(w):
            if req not in have:
                out.setdefault(req, []).append(wheel_name(w))
    return out


def check_size(sizes: dict[str, int], limit_mib: float) -> int:
    """The payload's total bytes; a ``UsageError`` naming the largest parts when it exceeds ``limit_mib``."""
    total = sum(sizes.values())
    if total > limit_mib * MIB:
        largest = ", ".join(f"{k} {v / MIB:.1f} MiB" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:3])
        raise UsageError(f"The payload is {total / MIB:.1f} MiB, over the {limit_mib:g} MiB limit (largest: "
                         f"{largest}). Lower --wiki-tokens, or raise --limit-mib if the calls carry it in parts.")
    return total


def plan_calls(sizes: dict[str, int], tree: int, call_mib: float) -> list[list[str]]:
    """Group the payload's paths into calls that each carry at most ``call_mib`` with the working tree (``tree``
    bytes, in every call); the wheels come first since every later step needs them installed. First-fit
    decreasing; a ``UsageError`` when one path alone does not fit beside the tree."""
    room = call_mib * MIB - tree
    calls: list[tuple[int, list[str]]] = []
    order = sorted(sizes, key=lambda k: (not k.endswith("wheels"), -sizes[k]))
    for path in order:
        if sizes[path] > room:
            raise UsageError(f"{path} ({sizes[path] / MIB:.1f} MiB) does not fit in a call beside the working tree "
                             f"({tree / MIB:.1f} MiB) under {call_mib:g} MiB. Make it smaller (e.g. --wiki-tokens) "
                             f"or the working tree smaller.")
        for k, (used, paths) in enumerate(calls):
            if used + sizes[path] <= room:
                calls[k] = (used + sizes[path], paths + [path])
                break
        else:
            calls.append((sizes[path], [path]))
    return [paths for _, paths in calls]


def tree_bytes(repo: Path = REPO) -> int:
    """Bytes of the working tree a call copies: tracked files and untracked ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                         capture_output=True, check=True).stdout
    files = {repo / f for f in out.decode().split("\0") if f}
    return sum(f.stat().st_size for f in files if f.is_file())


# ---------------------------------------------------------------------------------------------------
def fetch_wheels(folder: Path) -> list[Path]:
    """Download (or build) the planned wheels into ``folder``; remove any other wheel found there."""
    folder.mkdir(parents=True, exist_ok=True)
    for cmd in download_commands(folder):
        print("$", " ".join(cmd[2:]), flush=True)
        if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
            raise UsageError(f"pip {cmd[3]} failed (its error is above): this step needs the package index; "
                             f"run with --no-wheels to rebuild only the corpora.")
    wanted = {canonical(n): v for n, v in pins().items()}
    wheels = []
    for w in sorted(folder.glob("*.whl")):
        version = w.name.split("-")[1]
        if wanted.get(wheel_name(w)) == version:
            wheels.append(w)
        else:  # an earlier plan's wheel: gpu_session.sh installs every *.whl here
            w.unlink()
    if missing := set(wanted) - {wheel_name(w) for w in wheels}:
        raise UsageError(f"pip did not leave wheels for {sorted(missing)} in {folder}. Check the pip output above.")
    return wheels


def export(corpus: Corpus, folder: Path, home: Path, seed: int = 42) -> Path:
    """``stage=export_tokens`` for one corpus, in this process (no Hydra run folder is written into ``home``); a
    file already holding the same corpus is kept."""
    from ulmfit.config import compose
    from ulmfit.data import load_corpus
    from ulmfit.data.portable import SUFFIX, export_corpus, read_header, subset_fingerprint
    out = folder / f"{corpus.name}{SUFFIX}"
    cfg = compose(*corpus.overrides, f"paths.root={home}", f"seed={seed}")
    source = load_corpus(cfg.data, cfg.tokenizer, cfg.paths.cache)
    expected = (subset_fingerprint(source.fingerprint, "train", corpus.max_tokens, seed) if corpus.max_tokens
                else source.fingerprint)
    if out.is_file() and read_header(out)["fingerprint"] == expected:
        print(f"{out}: up to date ({expected})", flush=True)
        return out
    t0 = time.perf_counter()
    export_corpus(source, out, max_tokens=corpus.max_tokens, seed=seed)
    print(f"{out}: exported in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / ".gpu", help="payload folder (ignored by git)")
    ap.add_argument("--home", type=Path, default=None,
                    help="ULMFIT_HOME whose token cache holds the corpora (default: $ULMFIT_HOME or .)")
    ap.add_argument("--shared", type=Path, default=SHARED_DATA, help="folder with imdb/, wiki-gutenberg/, wikitext-2/")
    # 5M: the IMDB call carries the working tree (24.6 MiB), the wheels and IMDB (29.1 MiB) beside it, under 64 MiB
    ap.add_argument("--wiki-tokens", type=int, default=WIKI_TOKENS, help="pretraining subset of wiki-gutenberg")
    ap.add_argument("--limit-mib", type=float, default=60, help="fail when the payload is larger")
    ap.add_argument("--call-mib", type=float, default=64, help="what one call carries, the working tree included")
    ap.add_argument("--no-wheels", action="store_true", help="only the corpora (no network needed)")
    args = ap.parse_args()
    home = (args.home or Path(os.environ.get("ULMFIT_HOME", "."))).resolve()
    sizes: dict[str, int] = {}
    try:
        wheels = sorted((args.out / "wheels").glob("*.whl")) if args.no_wheels else fetch_wheels(args.out / "wheels")
        for req, needed_by in unmet(wheels).items():
            print(f"warning: {req} (required by {', '.join(needed_by)}) is neither carried nor in the image",
                  flush=True)
        if wheels:
            sizes["wheels"] = sum(w.stat().st_size for w in wheels)
        for corpus in corpora(args.shared.resolve(), args.wiki_tokens):
            path = export(corpus, args.out / "corpora", home)
            sizes[str(path.relative_to(args.out))] = path.stat().st_size
        out = args.out.resolve()
        base = out.relative_to(REPO) if out.is_relative_to(REPO) else out  # carry= paths are the repository's
        rel = {str(base / k): v for k, v in sizes.items()}
        for k, v in rel.items():
            print(f"  {k:<40} {v / MIB:7.1f} MiB")
        print(f"  {'total':<40} {sum(rel.values()) / MIB:7.1f} MiB (limit {args.limit_mib:g} MiB)")
        tree = tree_bytes()
        calls = plan_calls(rel, tree, args.call_mib)
        print(f"The working tree ({tree / MIB:.1f} MiB) travels with every call: {len(calls)} call(s) of at most "
              f"{args.call_mib:g} MiB carry the payload:")
        for k, paths in enumerate(calls, 1):
            print(f"  call {k}: carry={paths}  ({(tree + sum(rel[p] for p in paths)) / MIB:.1f} MiB)")
        check_size(rel, args.limit_mib)
    except UsageError as e:
        print(f"gpu_payload: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
