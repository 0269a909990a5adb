"""From per-position terms to a :class:`losskit.LossOutput`; the malformed-box error."""

from __future__ import annotations

import torch
from torch import Tensor

import losskit
from losskit_plugins.token_box.config import TokenBoxConfig
from losskit_plugins.token_box.parse import BoxLayout
from losskit_plugins.token_box.terms import BoxTerms

__all__ = ["box_output", "raise_malformed"]


def raise_malformed(layout: BoxLayout, shape: torch.Size) -> None:
    """Raise ``ValueError`` naming the row, position and fault of the first malformed box (one host sync)."""
    if not bool(layout.box_bad.any()):
        return
    anchor = int(layout.box_bad.nonzero()[0, 0])
    t = shape[-1] if len(shape) == 2 else max(layout.box_bad.numel(), 1)
    row, pos = divmod(anchor, t)
    numbers, foreign, closed = (int(x[anchor]) for x in layout.problems)
    if closed == 0:
        fault = "is unterminated (no box end token before the row ends or the next box starts)"
    elif foreign:
        fault = f"holds {foreign} token(s) that are neither digits nor separators (or are ignore_index)"
    else:
        fault = f"has {numbers} numbers, expected 4 (x1, y1, x2, y2 in box_format)"
    raise ValueError(
        f"labels: row {row}: the box starting at position {pos} (after the shift) {fault}; "
        "fix the labels or set on_malformed='skip'"
    )


def box_output(
    cfg: TokenBoxConfig, terms: BoxTerms, layout: BoxLayout, shape: torch.Size, normalizer: Tensor | float | None
) -> losskit.LossOutput:
    """Weight and reduce the per-position ``terms`` (see ``TokenBoxLoss`` for the reductions)."""
    dtype = terms.iou_expected.dtype
    count = layout.box_ok.sum()
    boxes = count.clamp(min=1).to(dtype) if normalizer is None else normalizer
    tokens = layout.is_coord.sum().clamp(min=1).to(dtype)
    named = {
        "l1": (terms.l1, cfg.l1_weight, boxes),
        cfg.iou_loss: (terms.iou_term, cfg.iou_weight, boxes),
        "ntl_mse": (terms.ntl_mse, cfg.ntl_mse_weight, tokens),
        "ntl_wasserstein": (terms.ntl_wasserstein, cfg.ntl_wasserstein_weight, tokens),
    }
    parts: dict[str, Tensor] = {}
    for name, (values, _, divisor) in named.items():
        if values is None:
            continue
        if cfg.reduction == "none":
            parts[name] = values.reshape(shape)
        else:
            parts[name] = values.sum() if cfg.reduction == "sum" else values.sum() / divisor
    # terms.zero keeps the loss on the graph when every weight is 0 (e.g. a curriculum at its start)
    total = terms.zero if cfg.reduction != "none" else terms.zero.expand(shape)
    for name, value in parts.items():
        total = total + named[name][1] * value
    bad = layout.box_bad.sum()
    return losskit.LossOutput(
        loss=total,
        parts=parts,
        metrics={
            "mean_iou": terms.iou_expected.sum() / count.clamp(min=1),
            "mean_iou_argmax": terms.iou_argmax.sum() / count.clamp(min=1),
            "num_boxes": count,
            "malformed_share": bad / (count + bad).clamp(min=1),
        },
    )
