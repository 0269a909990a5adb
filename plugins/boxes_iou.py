"""IoU-family losses of paired ``[N, 4]`` xyxy boxes: IoU, GIoU, DIoU and CIoU.

Values follow torchvision.ops (``generalized_box_iou_loss``, ``distance_box_iou_loss``,
``complete_box_iou_loss``), operation for operation, so valid boxes give the same
numbers and gradients (to float rounding). Papers: Rezatofighi et al. 2019, "Generalized
Intersection over Union" (GIoU); Zheng et al. 2020, "Distance-IoU Loss" (DIoU, CIoU).

Where torchvision falls short, this module does better:

- identical boxes give loss 0 and gradient 0 for every variant, zero-area boxes
  included (torchvision gives 1 for an empty box against itself: 0/0 IoU);
- CIoU uses the caller's ``eps`` everywhere (torchvision drops it in the DIoU part);
- the CIoU aspect term uses ``atan2(w, h)``: defined at zero height, and a point
  box (w = h = 0) counts as square, so no 0/0 in value or gradient.

IoU and GIoU run as one fused ``autograd.Function`` (few elementwise passes, an
analytic backward); DIoU and CIoU add their penalties with ordinary autograd ops.
Gradients at ties (``max(a, b)`` with ``a == b``) are split evenly between the two
arguments, as PyTorch's ``maximum``/``minimum`` do.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = ["IouKind", "box_iou_loss"]

IouKind = Literal["iou", "giou", "diou", "ciou"]


class _OverlapLoss(torch.autograd.Function):
    """``1 - IoU`` or ``1 - GIoU`` of paired xyxy boxes, with a fused backward.

    Inputs: ``pred [N, 4]``, ``target [N, 4]`` (contiguous, same float dtype), ``eps``,
    ``generalized``. Outputs: ``loss [N]`` and ``iou [N]`` (not differentiable; 1 for
    identical boxes).
    """

    @staticmethod
    def forward(ctx: Any, pred: Tensor, target: Tensor, eps: float, generalized: bool) -> tuple[Tensor, Tensor]:
        n = pred.shape[0]
        hi = torch.maximum(pred, target).view(n, 2, 2)  # [:, 0] intersection min corner, [:, 1] enclosing max corner
        lo = torch.minimum(pred, target).view(n, 2, 2)  # [:, 0] enclosing min corner, [:, 1] intersection max corner
        p2, t2 = pred.view(n, 2, 2), target.view(n, 2, 2)
        wh_p = p2[:, 1] - p2[:, 0]  # [N, 2]
        wh_t = t2[:, 1] - t2[:, 0]  # [N, 2]
        wh_i = (lo[:, 1] - hi[:, 0]).clamp_(min=0)  # [N, 2] intersection extents, 0 when disjoint
        inter = wh_i[:, 0] * wh_i[:, 1]
        union = wh_p[:, 0] * wh_p[:, 1] + wh_t[:, 0] * wh_t[:, 1] - inter
        iou = inter / (union + eps)
        same = (pred == target).all(1)  # [N] identical boxes: loss 0, IoU 1, even with zero area
        if generalized:
            wh_c = hi[:, 1] - lo[:, 0]  # [N, 2] enclosing box extents
            area_c = wh_c[:, 0] * wh_c[:, 1]
            loss = 1 - (iou - (area_c - union) / (area_c + eps))
        else:
            wh_c = area_c = None
            loss = 1 - iou
        loss.masked_fill_(same, 0.0)
        ctx.eps, ctx.generalized = eps, generalized
        ctx.save_for_backward(pred, target, wh_p, wh_t, wh_i, wh_c, area_c, inter, union, iou, same)
        iou_out = iou.masked_fill(same, 1.0)
        ctx.mark_non_differentiable(iou_out)
        return loss, iou_out

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, _grad_iou: Tensor) -> tuple[Tensor | None, ...]:
        pred, target, wh_p, wh_t, wh_i, wh_c, area_c, inter, union, iou, same = ctx.saved_tensors
        n, eps = pred.shape[0], ctx.eps
        go = grad_loss.masked_fill(same, 0.0)  # [N]
        u_eps = union + eps
        r_u = u_eps.reciprocal()
        d_union = iou * r_u  # dL/d(union) at fixed intersection
        if ctx.generalized:
            r_c = (area_c + eps).reciprocal()
            d_union -= r_c
            g_c = go * u_eps * r_c * r_c  # dL/d(area_c) = (union + eps) / (area_c + eps)^2
        d_inter = (r_u + d_union).neg_().masked_fill_(inter <= 0, 0.0)  # union = a_p + a_t - inter
        g_a = go * d_union
        g_i = go * d_inter
        # d(w*h) = (h, w): flip the extents; M and H are the mean and half-difference of the
        # intersection and enclosing-box terms, split between pred and target by sign(pred - target).
        w_i = g_i[:, None] * wh_i.flip(1)  # [N, 2]
        w_c = g_c[:, None] * wh_c.flip(1) if ctx.generalized else torch.zeros_like(w_i)
        mean = (w_i + w_c).mul_(0.5)  # [N, 2]
        half = (w_i - w_c).mul_(0.5)  # [N, 2]
        tie = torch.sign(pred - target).view(n, 2, 2).mul_(half[:, None, :])  # [N, 2, 2]
        grads: list[Tensor | None] = [None, None, None, None]
        for k, (wh, sign) in enumerate(((wh_p, -1.0), (wh_t, 1.0))):
            if not ctx.needs_input_grad[k]:
                continue
            b = torch.addcmul(mean, g_a[:, None], wh.flip(1))  # [N, 2]
            grad = torch.stack((-b, b), 1).add_(tie, alpha=sign)  # [N, 2, 2]: min corner, max corner
            grads[k] = grad.view(n, 4)
        return tuple(grads)


def _centre_distance_penalty(pred: Tensor, target: Tensor, eps: float) -> Tensor:
    """DIoU penalty ``rho^2 / (c^2 + eps)`` ``[N]``: squared centre distance over squared enclosing diagonal."""
    n = pred.shape[0]
    p2, t2 = pred.view(n, 2, 2), target.view(n, 2, 2)
    wh_c = torch.maximum(p2[:, 1], t2[:, 1]) - torch.minimum(p2[:, 0], t2[:, 0])  # [N, 2]
    diag2 = (wh_c**2).sum(1) + eps
    centre_p = (p2[:, 1] + p2[:, 0]) / 2  # [N, 2]
    centre_t = (t2[:, 1] + t2[:, 0]) / 2
    return ((centre_p - centre_t) ** 2).sum(1) / diag2


def _aspect_angle(boxes: Tensor) -> Tensor:
    """``atan(w / h)`` as ``atan2(w, h)`` ``[N]``; a box with ``w^2 + h^2 == 0`` counts as square (pi/4)."""
    n = boxes.shape[0]
    b2 = boxes.view(n, 2, 2)
    w, h = (b2[:, 1] - b2[:, 0]).unbind(1)
    point = (w * w + h * h) == 0  # atan2's gradient divides by w^2 + h^2
    one = torch.ones_like(w)
    return torch.atan2(torch.where(point, one, w), torch.where(point, one, h))


def _aspect_penalty(pred: Tensor, target: Tensor, iou: Tensor, eps: float) -> Tensor:
    """CIoU penalty ``alpha * v`` ``[N]`` with ``v = 4/pi^2 (atan(w_t/h_t) - atan(w_p/h_p))^2`` and ``alpha`` detached."""
    v = (4 / math.pi**2) * (_aspect_angle(target) - _aspect_angle(pred)) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return alpha * v


def box_iou_loss(pred: Tensor, target: Tensor, kind: IouKind, eps: float) -> tuple[Tensor, Tensor]:
    """IoU-family loss of paired boxes.

    Args:
        pred: ``[N, 4]`` xyxy boxes with ``x1 <= x2``, ``y1 <= y2`` (float32 or float64).
        target: ``[N, 4]`` xyxy boxes, same dtype.
        kind: ``"iou"`` (``1 - IoU``), ``"giou"``, ``"diou"`` or ``"ciou"``.
        eps: added to every denominator, as torchvision's ``eps`` (default there 1e-7).

    Returns:
        ``(loss [N], iou [N])``; ``iou`` is detached (a metric), 1 for identical boxes.
    """
    pred, target = pred.contiguous(), target.contiguous()
    loss, iou = _OverlapLoss.apply(pred, target, eps, kind == "giou")
    if kind in ("diou", "ciou"):
        loss = loss + _centre_distance_penalty(pred, target, eps)
    if kind == "ciou":
        loss = loss + _aspect_penalty(pred, target, iou, eps)
    return loss, iou
