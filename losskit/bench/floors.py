"""The matmul floor: the three matrix products every exact bilinear-logit loss needs.

Contrastive losses form ``[B, B]`` logits from two ``[B, D]`` feature sets; an LM head
forms ``[N, V]`` logits from ``[N, H]`` hidden states and a ``[V, H]`` weight. Either way
an exact loss does at least the logits product in forward and the two gradient
products in backward. ``losskit bench`` times the losses against this floor, so the
ratio shows what a loss costs above the unavoidable matmuls.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["three_matmul_floor"]


class _MatmulFloor(torch.autograd.Function):
    """Forward ``S = x @ y.T``; backward ``S @ y`` and ``S.T @ x``: exactly three B x M x D products."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor) -> Tensor:  # type: ignore[override]
        s = x @ y.T  # [B, M]
        ctx.save_for_backward(x, y, s)
        return s.new_zeros(())

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        x, y, s = ctx.saved_tensors
        return s @ y, s.T @ x


def three_matmul_floor(x: Tensor, y: Tensor, **_: object) -> Tensor:
    """``x [B, D]``, ``y [M, D]``: the logits matmul ``x @ y.T`` in forward and the two
    gradient matmuls in backward, and nothing else (its value is 0). Extra keyword
    inputs of the loss it stands in for (``group_ids``, ...) are ignored."""
    return _MatmulFloor.apply(x, y)
