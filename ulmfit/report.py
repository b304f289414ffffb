"""Console summaries of a run's metrics."""

from __future__ import annotations

from typing import Any, Mapping


def print_table(title: str, metrics: Mapping[str, Any]) -> None:
    """Print the scalar metrics as an aligned two-column table."""
    rows = [(k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in metrics.items()
            if isinstance(v, (int, float, str, bool))]
    width = max((len(k) for k, _ in rows), default=10)
    print(f"\n== {title}")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
