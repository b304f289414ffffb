"""Plots (PNG) from store entries and results CSVs: loss curves and every layer group's LR over the steps of a
run, and the sample-efficiency curve. Writes into experiments/results/.

    python -m experiments.plots --home runs/ --entries lm_finetune/imdb-cpu-ft classify/imdb-cpu-clas
    python -m experiments.plots --sample-efficiency

Curves come from the entry's ``curves.json`` (recorded by every training stage: per step the training loss
and each parameter group's LR; per epoch the validation loss), so any finished run can be plotted.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.common import RESULTS  # noqa: E402


def curves_plot(entry_dir: Path, out: Path | None = None) -> Path:
    """Two panels: train loss per step with validation loss per epoch; the LR of each layer group per step."""
    curves = json.loads((entry_dir / "curves.json").read_text())
    steps, n_groups = curves["step"], len(curves["lrs"][0])
    fig, (loss_ax, lr_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    loss_ax.plot(steps, curves["train_loss"], lw=0.8, label="train loss (smoothed)")
    if curves.get("valid_step"):
        loss_ax.plot(curves["valid_step"], curves["valid_loss"], "o-", label="valid loss (end of epoch)")
    for boundary in curves.get("phase_start", [])[1:]:
        loss_ax.axvline(boundary, color="grey", lw=0.6, ls=":")
    loss_ax.set(xlabel="step", ylabel="cross-entropy", title=f"{entry_dir.parent.name}/{entry_dir.name}")
    loss_ax.legend()
    for g in range(n_groups):
        lr_ax.plot(steps, [lrs[g] for lrs in curves["lrs"]], lw=1, label=f"group {g}" + (" (top)" if g == n_groups - 1 else ""))
    lr_ax.set(xlabel="step", ylabel="learning rate", yscale="log", title="LR per layer group (lowest = 0)")
    lr_ax.legend(fontsize=7)
    fig.tight_layout()
    out = out or RESULTS / f"curves-{entry_dir.parent.name}-{entry_dir.name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def sample_efficiency_plot(csv_path: Path = RESULTS / "sample_efficiency.csv",
                           out: Path = RESULTS / "sample_efficiency.png") -> Path:
    """Test error (%) against labelled examples (log scale), mean over seeds with min-max bars, one line per method."""
    rows = list(csv.DictReader(open(csv_path)))
    by: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[r["method"]][int(r["n_train"])].append(100 * (1 - float(r["test_accuracy"])))
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, points in sorted(by.items()):
        ns = sorted(points)
        mean = [sum(points[n]) / len(points[n]) for n in ns]
        lo = [m - min(points[n]) for m, n in zip(mean, ns)]
        hi = [max(points[n]) - m for m, n in zip(mean, ns)]
        ax.errorbar(ns, mean, yerr=[lo, hi], marker="o", capsize=3, label=method.replace("_", " "))
    ax.set(xscale="log", xlabel="labelled training reviews", ylabel="test error (%)", title="IMDB sample efficiency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("runs"))
    ap.add_argument("--entries", nargs="*", default=[], help="<stage>/<name> of store entries")
    ap.add_argument("--sample-efficiency", action="store_true")
    args = ap.parse_args()
    for ref in args.entries:
        print(curves_plot(args.home / "store" / ref))
    if args.sample_efficiency:
        print(sample_efficiency_plot())


if __name__ == "__main__":
    main()
