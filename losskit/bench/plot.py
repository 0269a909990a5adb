"""Bar chart of forward+backward times (median with IQR whiskers) per case and implementation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from losskit.bench.results import CaseResult

__all__ = ["plot_cases"]


def plot_cases(cases: Sequence[CaseResult], path: str | Path, *, title: str = "losskit bench") -> Path:
    """Write a PNG: one group of bars per case (loss @ size), one bar per implementation.

    Bars are forward+backward medians in milliseconds (log scale), whiskers span the
    interquartile range; implementations that ran out of memory or failed are marked
    in the group label. Uses matplotlib's Agg backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = sorted({r.impl for c in cases for r in c.impls}, key=lambda s: (s != "losskit", s))
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(cases) * max(1, len(labels)) ** 0.5), 4.5))
    for k, label in enumerate(labels):
        xs, ys, lo, hi = [], [], [], []
        for i, c in enumerate(cases):
            r = next((r for r in c.impls if r.impl == label), None)
            if r is None or r.forward_backward is None:
                continue
            t = r.forward_backward
            q25, q75 = np.percentile(t.times_s, [25, 75])
            xs.append(i + (k - (len(labels) - 1) / 2) * width)
            ys.append(t.median_s * 1e3)
            lo.append(max(0.0, t.median_s - float(q25)) * 1e3)
            hi.append(max(0.0, float(q75) - t.median_s) * 1e3)
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=label)
    names = []
    for c in cases:
        failed = [f"{r.impl}: {r.status.upper()}" for r in c.impls if r.status in ("oom", "error")]
        names.append(f"{c.loss}\n{c.size_label}" + ("\n" + "\n".join(failed) if failed else ""))
    ax.set_xticks(range(len(cases)), names, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("forward+backward, ms (median, IQR)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
