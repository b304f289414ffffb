"""Console summaries of a run's metrics."""

from __future__ import annotations

from typing import Any, Mapping


def print_table(title: str, metrics: Mapping[str, Any]) -> None:
    """Print the scalar metrics as an aligned two-column table."""
    rows = [(k, _fmt(v)) for k, v in metrics.items() if isinstance(v, (int, float, str, bool))]
    width = max((len(k) for k, _ in rows), default=10)
    print(f"\n== {title}")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 1000 else f"{v:.4g}"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
