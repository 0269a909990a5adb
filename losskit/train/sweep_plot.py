"""``sweep.png``: the final recall@K (smallest K) of every sweep run, as grouped bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_sweep", "sweep_figure"]


def _k(rows: list[dict[str, Any]]) -> int:
    return min(int(key.rsplit("_r", 1)[1]) for key in rows[0] if key.startswith("i2t_r"))


def sweep_figure(rows: list[dict[str, Any]]) -> Any:
    """The matplotlib figure: two bars per run, values written on them, the legend outside the axes,
    and a y range around the values (so the spread between runs shows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = _k(rows)
    series = [(f"i2t_r{k}", f"image→text R@{k}"), (f"t2i_r{k}", f"text→image R@{k}")]
    values = [r[key] for r in rows for key, _ in series]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(rows) + 2.5), 4.0))
    width = 0.38
    for j, (key, label) in enumerate(series):
        xs = [x + (j - 0.5) * width for x in range(len(rows))]
        bars = ax.bar(xs, [r[key] for r in rows], width, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    ax.set_xticks(list(range(len(rows))), [r["run"] for r in rows], rotation=20, ha="right", fontsize=8)
    low, high = min(values), max(values)
    margin = max(0.1 * (high - low), 0.01)
    ax.set_ylim(max(0.0, low - 3 * margin), min(1.0, high + 2 * margin) + margin)
    ax.set_ylabel(f"final validation recall@{k}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def plot_sweep(rows: list[dict[str, Any]], path: Path) -> None:
    """Write :func:`sweep_figure` as a PNG."""
    import matplotlib.pyplot as plt

    fig = sweep_figure(rows)
    fig.savefig(path, dpi=100)
    plt.close(fig)
