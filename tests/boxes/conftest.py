"""Brute-force reference of ``bbox`` for the box tests: float64, a Python loop over boxes.

Written from the papers' formulas (GIoU: Rezatofighi et al. 2019; DIoU/CIoU: Zheng et
al. 2020) with torchvision's conventions (``eps`` in every denominator, CIoU's alpha
held constant in the backward) and losskit's documented choices (identical boxes
give 0; a point box counts as square; ``clamp`` collapses inverted sides to their
centre). Each box is computed on 0-d tensors, so autograd gives the reference
gradient; ``max``/``min`` ties split the gradient evenly, as ``torch.maximum`` does.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor

ZERO = torch.zeros((), dtype=torch.float64)


def corners(box: list[Tensor], fmt: str) -> list[Tensor]:
    """One box in ``fmt`` to [x1, y1, x2, y2]."""
    a, b, c, d = box
    if fmt == "xyxy":
        return [a, b, c, d]
    if fmt == "xywh":
        return [a, b, a + c, b + d]
    return [a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d]  # cxcywh


def clamp_box(box: list[Tensor]) -> list[Tensor]:
    """Inverted sides collapse to their centre."""
    x1, y1, x2, y2 = box
    if x2 < x1:
        x1 = x2 = x1 * 0.5 + x2 * 0.5
    if y2 < y1:
        y1 = y2 = y1 * 0.5 + y2 * 0.5
    return [x1, y1, x2, y2]


def angle(w: Tensor, h: Tensor) -> Tensor:
    """atan(w / h); a point box (w = h = 0) counts as square."""
    if w == 0 and h == 0:
        return torch.full((), math.pi / 4, dtype=torch.float64)
    return torch.atan2(w, h)


def iou_term(p: list[Tensor], t: list[Tensor], kind: str, eps: float) -> tuple[Tensor, float]:
    """(loss, plain IoU) of one pair of xyxy boxes."""
    if all(bool(a == b) for a, b in zip(p, t)):
        return ZERO, 1.0
    x1, y1, x2, y2 = p
    gx1, gy1, gx2, gy2 = t
    iw = torch.minimum(x2, gx2) - torch.maximum(x1, gx1)
    ih = torch.minimum(y2, gy2) - torch.maximum(y1, gy1)
    inter = iw * ih if (iw > 0 and ih > 0) else ZERO
    union = (x2 - x1) * (y2 - y1) + (gx2 - gx1) * (gy2 - gy1) - inter
    iou = inter / (union + eps)
    if kind == "iou":
        return 1 - iou, float(iou.detach())
    cw = torch.maximum(x2, gx2) - torch.minimum(x1, gx1)
    ch = torch.maximum(y2, gy2) - torch.minimum(y1, gy1)
    if kind == "giou":
        area_c = cw * ch
        return 1 - iou + (area_c - union) / (area_c + eps), float(iou.detach())
    rho2 = ((x1 + x2) / 2 - (gx1 + gx2) / 2) ** 2 + ((y1 + y2) / 2 - (gy1 + gy2) / 2) ** 2
    diou = 1 - iou + rho2 / (cw**2 + ch**2 + eps)
    if kind == "diou":
        return diou, float(iou.detach())
    v = 4 / math.pi**2 * (angle(gx2 - gx1, gy2 - gy1) - angle(x2 - x1, y2 - y1)) ** 2
    alpha = (v / (1 - iou + v + eps)).detach()
    return diou + alpha * v, float(iou.detach())


def coordinate_term(p: list[Tensor], t: list[Tensor], beta: float) -> Tensor:
    """Sum over the 4 coordinates of |p - t| (or smooth L1 with transition ``beta``)."""
    total = ZERO
    for a, b in zip(p, t):
        d = (a - b).abs()
        if beta > 0:
            d = 0.5 * d * d / beta if d < beta else d - 0.5 * beta
        total = total + d
    return total


def reference_bbox(
    pred: Tensor,
    target: Tensor,
    *,
    box_format: str = "xyxy",
    l1_weight: float = 1.0,
    smooth_l1_beta: float = 0.0,
    iou_loss: str = "giou",
    iou_weight: float = 1.0,
    eps: float = 1e-7,
    degenerate: str = "raise",
    reduction: str = "mean",
    weights: Tensor | None = None,
    num_boxes: float | None = None,
) -> tuple[Tensor, dict[str, Tensor], float]:
    """(loss, parts, mean IoU) of ``bbox`` with this config, one box at a time in float64."""
    n = pred.shape[0]
    per_box, l1s, ious, plain = [], [], [], []
    for i in range(n):
        p = [pred[i, j].double() for j in range(4)]
        t = [target[i, j].double() for j in range(4)]
        pc, tc = corners(p, box_format), corners(t, box_format)
        if degenerate == "clamp":
            pc, tc = clamp_box(pc), clamp_box(tc)
        w = weights[i].double() if weights is not None else 1.0
        total = ZERO
        if l1_weight > 0:
            l1 = coordinate_term(p, t, smooth_l1_beta) * w
            l1s.append(l1)
            total = total + l1_weight * l1
        term, iou = iou_term(pc, tc, iou_loss if iou_loss != "none" else "iou", eps)
        plain.append(iou_term(pc, tc, "iou", eps)[1])
        if iou_loss != "none" and iou_weight > 0:
            ious.append(term * w)
            total = total + iou_weight * term * w
        per_box.append(total)

    def reduce(values: list[Tensor]) -> Tensor:
        stacked = torch.stack(values) if values else torch.zeros(0, dtype=torch.float64)
        if reduction == "none":
            return stacked
        if reduction == "sum":
            return stacked.sum()
        return stacked.sum() / (max(num_boxes, 1.0) if num_boxes is not None else max(n, 1))

    parts = {}
    if l1_weight > 0:
        parts["l1"] = reduce(l1s)
    if iou_loss != "none" and iou_weight > 0:
        parts[iou_loss] = reduce(ious)
    return reduce(per_box), parts, sum(plain) / max(n, 1)


@pytest.fixture(scope="session")
def ref() -> SimpleNamespace:
    """The reference functions: ``bbox(pred, target, **config)`` and ``iou_term(p, t, kind, eps)``."""
    return SimpleNamespace(bbox=reference_bbox, iou_term=iou_term)
