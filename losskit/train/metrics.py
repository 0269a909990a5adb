"""``metrics.jsonl`` (one JSON object per line), progress output, and the PNG of the curves.

Training lines: ``{"step", "epoch", "loss", "parts": {...}, "metrics": {...}, "lr":
{group: lr}, "samples_per_s"}``. Evaluation lines: ``{"step", "eval":
{"i2t_r1": ..., ...}}``. On resume, lines after the checkpoint's step are dropped (the
killed run may have written them) and a torn last line is discarded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog", "Progress", "plot_metrics", "read_metrics"]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path`` (a torn last line is ignored)."""
    records = []
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsLog:
    """Append-only JSONL writer; ``truncate_after(step)`` prepares a resume."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, step: int) -> None:
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class Progress:
    """A tqdm bar on a terminal, or a plain line per ``log_every`` steps otherwise."""

    def __init__(self, mode: str, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled
        use_bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        if enabled and use_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)
        self.total = total

    def update(self, step: int, summary: dict[str, float], log_line: bool) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in summary.items()}, refresh=False)
        elif log_line:
            fields = " ".join(f"{k} {v:.4g}" for k, v in summary.items())
            print(f"step {step}/{self.total} {fields}", flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def plot_metrics(records: list[dict[str, Any]], path: Path, *, title: str = "") -> None:
    """Loss (left) and recall@K, the smallest K evaluated, (right) against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval" in r]
    fig, (ax_loss, ax_recall) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_yscale("log")
    k = min((int(key.rsplit("_r", 1)[1]) for r in evals for key in r["eval"]), default=1)
    for key, label in ((f"i2t_r{k}", f"image→text R@{k}"), (f"t2i_r{k}", f"text→image R@{k}")):
        points = [(r["step"], r["eval"][key]) for r in evals if key in r["eval"]]
        ax_recall.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax_recall.set_xlabel("step")
    ax_recall.set_ylabel(f"validation recall@{k}")
    ax_recall.set_ylim(0, 1.02)
    ax_recall.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
