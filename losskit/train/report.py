"""What a run prints at the end: the recall table, skipped files, learned values."""

from __future__ import annotations

import losskit

__all__ = ["learned_values", "summary_table"]


def summary_table(before: dict[str, float], after: dict[str, float], chance: dict[str, float], ks: list[int]) -> str:
    """Recall@K before and after training next to chance (chance is given for R@1)."""
    lines = [f"{'recall':<15}{'chance':>8}{'before':>8}{'after':>8}"]
    for direction, label in (("i2t", "image→text"), ("t2i", "text→image")):
        for k in ks:
            key = f"{direction}_r{k}"
            ref = f"{chance[f'{direction}_r1']:.3f}" if k == 1 and f"{direction}_r1" in chance else ""
            nan = float("nan")
            lines.append(f"{label + f' R@{k}':<15}{ref:>8}{before.get(key, nan):>8.3f}{after.get(key, nan):>8.3f}")
    return "\n".join(lines)


def learned_values(loss: losskit.Loss) -> dict[str, float]:
    """The current value of every learnable config field (:meth:`losskit.Loss.learned_values`).

    ``{"temperature": 0.031}`` for a ``clip`` with a learnable temperature; a mixture's
    terms give ``{"terms.itc.temperature": ...}``.
    """
    found = dict(loss.learned_values())
    for name, term in loss.term_losses().items():
        found.update({f"terms.{name}.{f}": v for f, v in term.learned_values().items()})
    return found
