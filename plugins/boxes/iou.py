"""IoU-family losses of paired xyxy boxes: IoU, GIoU, DIoU and CIoU.

Boxes come as coordinate rows, ``[4, N]`` (rows x1, y1, x2, y2; see
:func:`losskit_plugins.boxes.inputs.to_rows`): every elementwise pass then runs over
contiguous memory. Values follow torchvision.ops (``generalized_box_iou_loss``,
``distance_box_iou_loss``, ``complete_box_iou_loss``) operation for operation, and the
fused backward repeats autograd's arithmetic on torchvision's graph, so valid boxes
give the same values and gradients, bit for bit. Papers: Rezatofighi et al. 2019,
"Generalized Intersection over Union" (GIoU); Zheng et al. 2020, "Distance-IoU Loss"
(DIoU, CIoU).

Where torchvision falls short, this module does better:

- identical boxes give loss 0 and gradient 0 for every variant, zero-area boxes
  included (torchvision gives 1 for an empty box against itself: 0/0 IoU);
- CIoU uses the caller's ``eps`` everywhere (torchvision drops it in the DIoU part);
- the CIoU aspect term ``atan(w / h)`` switches to ``atan2(w, h)`` for flat or tiny
  boxes (torchvision gives NaN gradients at zero height), and a point box
  (w = h = 0) counts as square, so no 0/0 in value or gradient.

IoU and GIoU run as one fused ``autograd.Function`` (few elementwise passes, an
analytic backward; it supports ``torch.func.grad``, not double backward); DIoU and
CIoU add their penalties with ordinary autograd ops.
Gradients at ties (``max(a, b)`` with ``a == b``) are split evenly between the two
arguments, as PyTorch's ``maximum``/``minimum`` do.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["IouKind", "box_iou_loss"]

IouKind = Literal["iou", "giou", "diou", "ciou"]

_MIN_SIDE = 2.0**-40  # CIoU: below this height, atan(w / h) takes the atan2 form
_MAX_ASPECT = 2.0**20  # CIoU: above this w / h, likewise


class _OverlapLoss(torch.autograd.Function):
    """``1 - IoU`` or ``1 - GIoU`` of paired xyxy boxes, with a fused backward.

    Inputs: ``pred [4, N]``, ``target [4, N]`` (coordinate rows, same float dtype),
    ``eps``, ``generalized``. Outputs: ``loss [N]`` and ``iou [N]`` (not
    differentiable; 1 for identical boxes).

    The backward repeats, term for term, the arithmetic PyTorch's autograd performs on
    torchvision's ``generalized_box_iou_loss`` graph (same products, quotients and
    summation order), so gradients agree bit for bit on valid boxes, not merely to
    rounding.
    """

    @staticmethod
    def forward(pred: Tensor, target: Tensor, eps: float, generalized: bool) -> tuple[Tensor, ...]:
        # returns (loss, iou, *intermediates); setup_context saves the intermediates
        p, t = pred.contiguous(), target.contiguous()  # [4, N]: x1, y1, x2, y2
        hi = torch.maximum(p, t)  # [4, N]: intersection x1, y1; enclosing x2, y2
        lo = torch.minimum(p, t)  # [4, N]: enclosing x1, y1; intersection x2, y2
        wh_p, wh_t = p[2:] - p[:2], t[2:] - t[:2]  # [2, N] widths, heights
        wh_i = (lo[2:] - hi[:2]).clamp_(min=0)  # [2, N] intersection extents, 0 when disjoint
        inter = wh_i[0] * wh_i[1]
        union = wh_p[0] * wh_p[1] + wh_t[0] * wh_t[1] - inter
        u_eps = union + eps
        iou = inter / u_eps
        same = (p == t).all(0)  # [N] identical boxes: loss 0, IoU 1, even with zero area
        if generalized:
            wh_c = hi[2:] - lo[:2]  # [2, N] enclosing box extents
            area_c = wh_c[0] * wh_c[1]
            c_eps = area_c + eps
            ratio = (area_c - union) / c_eps  # share of the enclosing box outside the union
            loss = 1 - (iou - ratio)
        else:
            wh_c = area_c = iou.new_empty(0)
            loss = 1 - iou
        loss.masked_fill_(same, 0.0)
        order = torch.sign(p - t).to(torch.int8)  # [4, N] who wins each max/min (0: tie); int8 saves memory
        # saved: extents, the two areas the rest is recomputed from (bit for bit) and the order
        return loss, iou.masked_fill(same, 1.0), wh_p, wh_t, wh_i, wh_c, union, area_c, order, same

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        _, _, eps, generalized = inputs
        ctx.eps, ctx.generalized = eps, generalized
        ctx.save_for_backward(*output[2:])
        ctx.mark_non_differentiable(*output[1:])

    @staticmethod
    @once_differentiable  # runs without grad (out= writes); no double backward
    def backward(ctx: Any, grad_loss: Tensor, *_: Tensor) -> tuple[Tensor | None, ...]:
        wh_p, wh_t, wh_i, wh_c, union, area_c, order, same = ctx.saved_tensors
        eps = ctx.eps
        go = grad_loss.masked_fill(same, 0.0)  # [N]
        inter = wh_i[0] * wh_i[1]
        u_eps = union + eps
        d_union = go * ((inter / u_eps) / u_eps)  # dL/d(union)
        if ctx.generalized:
            c_eps = area_c + eps
            d_enclosing_num = go / c_eps
            d_union -= d_enclosing_num
            d_area_c = d_enclosing_num - go * (((area_c - union) / c_eps) / c_eps)  # dL/d(enclosing area)
        d_inter = (-(go / u_eps) - d_union).masked_fill_(inter <= 0, 0.0)  # dL/d(intersection)
        del inter, u_eps

        def by_side(d: Tensor, wh: Tensor) -> Tensor:
            """``[2, N]`` gradient w.r.t. (width, height) of ``area = w * h`` given ``d = dL/d(area)``: (d h, d w)."""
            out = torch.empty_like(wh)
            torch.mul(d, wh[1], out=out[0])
            torch.mul(d, wh[0], out=out[1])
            return out

        g_i = by_side(d_inter, wh_i)
        g_c = by_side(d_area_c, wh_c) if ctx.generalized else None
        # weight of pred in max(pred, target): 1, 1/2 at ties (as torch.maximum's backward), 0;
        # in min(pred, target) it is 1 - s, and for target the two swap
        s = order.to(wh_p.dtype).add_(1.0).mul_(0.5)  # [4, N]
        grads: list[Tensor | None] = [None, None, None, None]
        for k, wh in enumerate((wh_p, wh_t)):
            if not ctx.needs_input_grad[k]:
                continue

            def weight(rows: slice, of_max: bool, k: int = k) -> Tensor:
                """Weight of input ``k`` in max (``of_max``) or min over ``rows`` of s."""
                return s[rows] if of_max == (k == 0) else 1.0 - s[rows]

            lo, hi = slice(0, 2), slice(2, 4)
            g_wh = by_side(d_union, wh)
            grad = s.new_empty(s.shape)  # [4, N]
            # min corner: -(side + intersection via max); enclosing via min. Max corner: the mirror.
            torch.add(g_wh, g_i * weight(lo, True), out=grad[lo]).neg_()
            torch.add(g_wh, g_i * weight(hi, False), out=grad[hi])
            if g_c is not None:
                grad[lo] -= g_c * weight(lo, False)
                grad[hi] += g_c * weight(hi, True)
            grads[k] = grad
        return tuple(grads)


def _centre_distance_penalty(pred: Tensor, target: Tensor, eps: float) -> Tensor:
    """DIoU penalty ``rho^2 / (c^2 + eps)`` ``[N]``: squared centre distance over squared enclosing diagonal.

    ``pred``, ``target``: ``[4, N]`` coordinate rows; torchvision's expression order.
    """
    x1, y1, x2, y2 = pred
    x1g, y1g, x2g, y2g = target
    xc1, yc1 = torch.min(x1, x1g), torch.min(y1, y1g)
    xc2, yc2 = torch.max(x2, x2g), torch.max(y2, y2g)
    diagonal_squared = ((xc2 - xc1) ** 2) + ((yc2 - yc1) ** 2) + eps
    centres_squared = (((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2) + (((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2)
    return centres_squared / diagonal_squared


def _aspect_angle(boxes: Tensor) -> Tensor:
    """``atan(w / h)`` ``[N]`` of boxes given as ``[4, N]`` coordinate rows, safe at zero or tiny sides.

    Boxes with a reasonable aspect ratio take torchvision's expression, ``atan(w / h)``.
    Flat or tiny ones (where ``w / h`` or its gradient would overflow) take the equal
    ``atan2(w, h)``; a box with ``w^2 + h^2 == 0`` counts as square (pi/4) and passes no
    gradient. Unused branches get harmless inputs, so no NaN leaks through ``where``.
    """
    w = boxes[2] - boxes[0]
    h = boxes[3] - boxes[1]
    by_ratio = (h >= _MIN_SIDE) & (w <= h * _MAX_ASPECT)  # w / h and (w / h) / h stay finite
    one = torch.ones_like(w)
    ratio = torch.atan(w / torch.where(by_ratio, h, one))
    point = by_ratio | ((w * w + h * h) == 0)  # atan2's gradient divides by w^2 + h^2
    angle = torch.atan2(torch.where(point, one, w), torch.where(point, one, h))
    return torch.where(by_ratio, ratio, torch.where(point, math.pi / 4, angle))


def _aspect_penalty(pred: Tensor, target: Tensor, iou: Tensor, eps: float) -> Tensor:
    """CIoU penalty ``alpha * v`` ``[N]`` with ``v = 4/pi^2 (atan(w_t/h_t) - atan(w_p/h_p))^2`` and ``alpha`` detached."""
    v = (4 / math.pi**2) * (_aspect_angle(target) - _aspect_angle(pred)) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return alpha * v


def box_iou_loss(pred: Tensor, target: Tensor, kind: IouKind, eps: float) -> tuple[Tensor, Tensor]:
    """IoU-family loss of paired boxes.

    Args:
        pred: ``[4, N]`` coordinate rows (x1, y1, x2, y2) with ``x1 <= x2``, ``y1 <= y2``
            (float32 or float64).
        target: ``[4, N]`` coordinate rows, same dtype.
        kind: ``"iou"`` (``1 - IoU``), ``"giou"``, ``"diou"`` or ``"ciou"``.
        eps: added to every denominator, as torchvision's ``eps`` (default there 1e-7).

    Returns:
        ``(loss [N], iou [N])``; ``iou`` is detached (a metric), 1 for identical boxes.
    """
    loss, iou = _OverlapLoss.apply(pred, target, eps, kind == "giou")[:2]
    if kind in ("diou", "ciou"):
        loss = loss + _centre_distance_penalty(pred, target, eps)
    if kind == "ciou":
        loss = loss + _aspect_penalty(pred, target, iou, eps)
    return loss, iou
