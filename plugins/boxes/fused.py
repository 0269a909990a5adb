"""The Triton path of ``bbox``: an autograd function around the fused kernels (:mod:`.triton_kernels`).

Forward: one kernel launch reads ``pred``/``target`` (``[N, 4]``, any float dtype,
computed in fp32) and writes per-block partial sums ``[P, 3]`` (P = N / 512) of the
weighted coordinate term, IoU-family term and plain IoU, or for ``reduction="none"`` the
per-box terms ``[N]``; a tiny ``sum`` finishes. Only the inputs are saved. Backward:
one launch recomputes every box and writes the input gradients. No host
synchronisation anywhere; memory beyond the inputs and their gradients is ``O(N / 512)``
(``O(N)`` for ``reduction="none"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import triton
from torch import Tensor
from torch.autograd.function import once_differentiable

from losskit_plugins.boxes.triton_kernels import bbox_backward, bbox_forward

__all__ = ["FusedBoxSpec", "fused_box_terms"]

_BLOCK = 512  # boxes per program: 2 per thread at 8 warps (~40 live fp32 values each: no spills);
_WARPS = 8  # ~20k programs at N = 10^7 keep every SM busy; the kernels are bound by memory bandwidth
_FORMATS = {"xyxy": 0, "xywh": 1, "cxcywh": 2}
_KINDS = {"none": 0, "iou": 1, "giou": 2, "diou": 3, "ciou": 4}


@dataclass(frozen=True)
class FusedBoxSpec:
    """The static part of a call: what the kernels compute (a ``bbox`` config, flattened)."""

    box_format: str
    clamp: bool
    kind: str  # "none" still computes the plain IoU (the metric)
    l1: bool
    beta: float
    eps: float
    per_box: bool

    def constants(self) -> dict[str, Any]:
        return {
            "FMT": _FORMATS[self.box_format],
            "CLAMP": self.clamp,
            "KIND": _KINDS[self.kind],
            "L1": self.l1,
            "SMOOTH": self.beta > 0,
            "BLOCK": _BLOCK,
        }


class _FusedBoxLoss(torch.autograd.Function):
    """``(l1 [] or [N], term [] or [N], iou_sum [])`` of paired boxes; see the module docstring."""

    @staticmethod
    def forward(ctx: Any, pred: Tensor, target: Tensor, weights: Tensor | None, spec: FusedBoxSpec) -> tuple[Tensor, ...]:
        n = pred.shape[0]
        blocks = triton.cdiv(n, _BLOCK)
        partial = torch.empty(blocks, 3, dtype=torch.float32, device=pred.device)  # [P, 3]
        shape = (n,) if spec.per_box else (0,)
        l1 = torch.empty(shape, dtype=torch.float32, device=pred.device)
        term = torch.empty(shape, dtype=torch.float32, device=pred.device)
        if blocks:
            bbox_forward[(blocks,)](
                pred, target, pred if weights is None else weights, l1, term, partial, n, spec.eps,
                max(spec.beta, 1e-30), HAS_W=weights is not None, PER_BOX=spec.per_box,
                num_warps=_WARPS, **spec.constants(),
            )
        sums = partial.sum(0)  # [3]
        ctx.spec = spec
        ctx.save_for_backward(pred, target, weights)
        iou_sum = sums[2]
        ctx.mark_non_differentiable(iou_sum)
        if spec.per_box:
            return l1, term, iou_sum
        return sums[0], sums[1], iou_sum

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_l1: Tensor, g_term: Tensor, _: Tensor) -> tuple[Tensor | None, ...]:
        pred, target, weights = ctx.saved_tensors
        spec: FusedBoxSpec = ctx.spec
        need_p, need_t, need_w = ctx.needs_input_grad[:3]
        d_pred = torch.empty_like(pred) if need_p else None
        d_target = torch.empty_like(target) if need_t else None
        d_weights = torch.empty_like(weights) if need_w else None
        n = pred.shape[0]
        if n:
            bbox_backward[(triton.cdiv(n, _BLOCK),)](
                pred, target, pred if weights is None else weights,
                g_l1, _stride(g_l1), g_term, _stride(g_term),
                pred if d_pred is None else d_pred, pred if d_target is None else d_target,
                pred if d_weights is None else d_weights, n, spec.eps, max(spec.beta, 1e-30),
                torch.finfo(pred.dtype).max, torch.finfo(target.dtype).max,
                HAS_W=weights is not None, NEED_P=need_p, NEED_T=need_t, NEED_W=need_w,
                num_warps=_WARPS, **spec.constants(),
            )
        return d_pred, d_target, d_weights, None


def _stride(grad: Tensor) -> int:
    """Element stride of an output's gradient: 0 for a scalar, else its own (an expanded
    ``ones`` from ``loss.sum().backward()`` is read in place, with stride 0)."""
    return grad.stride(0) if grad.dim() else 0


def fused_box_terms(
    pred: Tensor, target: Tensor, weights: Tensor | None, spec: FusedBoxSpec
) -> tuple[Tensor, Tensor, Tensor]:
    """``(l1, term, iou_sum)``: the weighted coordinate and IoU-family terms of ``pred [N, 4]`` against
    ``target [N, 4]`` (per-box weights ``[N]`` optional), summed over boxes or, with ``spec.per_box``,
    per box ``[N]``; and the sum of the plain IoU (detached). Gradients reach all three inputs."""
    return _FusedBoxLoss.apply(pred.contiguous(), target.contiguous(), weights, spec)
