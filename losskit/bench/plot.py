"""Chart of forward+backward times: one horizontal bar per implementation, grouped by case."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from losskit.bench.cases import LOSS_IMPL
from losskit.bench.results import CaseResult
from losskit.extras import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["make_figure", "plot_cases"]

_TITLE_POINTS = 10


def plot_cases(cases: Sequence[CaseResult], path: str | Path, *, title: str = "losskit bench") -> Path:
    """Write a PNG of forward+backward medians (ms, log scale) with interquartile whiskers.

    Each case (loss @ size) is a group of bars: the losskit loss first (blue), then its
    baselines (grey); rows that ran out of memory or failed show ``OOM`` / ``ERROR``
    instead of a bar. Uses matplotlib's Agg backend (no display needed).
    """
    fig = make_figure(cases, title=title)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_figure(cases: Sequence[CaseResult], *, title: str = "losskit bench") -> Figure:
    """The figure :func:`plot_cases` writes; the title is wrapped to the figure's width."""
    require("losskit bench --plot", ("matplotlib",))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ys, labels, bars, notes = [], [], [], []  # bars: (y, median ms, low whisker, high whisker, colour)
    y = 0.0
    for case in cases:
        for r in case.impls:
            ys.append(y)
            labels.append(f"{case.loss} [{case.size_label}]  {r.impl}" if r.impl == LOSS_IMPL else r.impl)
            if r.forward_backward is None:
                notes.append((y, r.status.upper()))
            else:
                t = r.forward_backward
                q25, q75 = (float(q) for q in np.percentile(t.times_s, [25, 75]))
                colour = "tab:blue" if r.impl == LOSS_IMPL else "tab:gray"
                med = t.median_s * 1e3
                bars.append((y, med, max(0.0, med - q25 * 1e3), max(0.0, q75 * 1e3 - med), colour))
            y += 1
        y += 0.6  # gap between cases
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.28 * len(ys)))
    if bars:
        by, width, lo, hi, colours = zip(*bars)
        ax.barh(by, width, xerr=[lo, hi], color=colours, capsize=2, height=0.8)
    for ny, text in notes:
        ax.text(0.01, ny, text, transform=ax.get_yaxis_transform(), va="center", color="tab:red", fontsize=8)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("forward+backward per call, ms (median; whiskers: interquartile range)")
    width_chars = int(fig.get_figwidth() * 72 / (0.62 * _TITLE_POINTS))  # average glyph ~0.62 em
    ax.set_title(textwrap.fill(title, width=width_chars), fontsize=_TITLE_POINTS)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    return fig
