"""Exact dense / tiled pairwise contrastive losses with a hand-written backward.

One ``torch.autograd.Function`` computes, for row features ``x [R, D]``, column features
``y [C, D]``, a logit scale ``t`` and bias ``b``, the logits ``s = t * x @ y.T + b`` tile by
tile (``chunk`` rows at a time; one tile = the dense path, whose logits are kept for
backward) and reduces them to per-row / per-column losses. Two kernels:

``softmax`` (``clip``, ``infonce``; :mod:`~losskit_plugins.contrastive.softmax_kernel`): per
row ``i`` with positives ``P_i``, negatives ``N_i`` (:mod:`~losskit_plugins.contrastive.pairs`)
and label smoothing ``eps``::

    L_i = (1 - eps) * mean_{p in P_i} -log( e^{s_ip} / (e^{s_ip} + sum_{n in N_i} e^{s_in}) )
          + eps * ( logsumexp_j s_ij - mean_j s_ij )

(``F.cross_entropy(s, target, label_smoothing=eps)`` with one positive per row; a row
without positives has loss 0); the same per column when ``cols``.

``sigmoid`` (``siglip``, Zhai et al. 2023; :mod:`~losskit_plugins.contrastive.sigmoid_kernel`):
``L_i = sum_{n in N_i} softplus(s_in) + sum_{p in P_i} softplus(-s_ip)``.

Costs, memory and the design are in docs/contrastive.md ("The engine").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from losskit.kernels import Kernel, use_triton
from losskit_plugins.contrastive.normalize import unit, unit_backward
from losskit_plugins.contrastive.pairs import Pairs
from losskit_plugins.contrastive.sigmoid_kernel import sigmoid_backward, sigmoid_forward
from losskit_plugins.contrastive.softmax_kernel import softmax_backward, softmax_forward
from losskit_plugins.contrastive.tiles import Tiles, softplus

__all__ = ["EngineOptions", "EngineResult", "pairwise_loss", "softplus"]


@dataclass(frozen=True)
class EngineOptions:
    """What :func:`pairwise_loss` computes.

    Attributes:
        kind: ``"softmax"`` or ``"sigmoid"``.
        pairs: positives of the ``[R, C]`` matrix.
        rows: compute the per-row loss; cols: the per-column loss (softmax only).
        label_smoothing: softmax ``eps``.
        chunk: rows per tile (None: one tile, logits kept for backward).
        has_bias: add ``bias`` to the logits (set by :func:`pairwise_loss`).
        normalize: L2-normalise the rows of ``x`` and ``y`` first (scale-safe, fused).
        metrics: also return arg-max indices (for top-1 accuracy) and the positives' logit sum.
        kernel: ``"torch"`` (this module) or ``"auto"`` / ``"triton"``: the fused Triton kernels
            (:mod:`losskit_plugins.contrastive.triton_dispatch`) where :func:`losskit.kernels.use_triton`
            says so and the features are fp16 / bf16 / fp32 (float64 always runs here).
    """

    kind: Literal["softmax", "sigmoid"]
    pairs: Pairs
    rows: bool = True
    cols: bool = False
    label_smoothing: float = 0.0
    chunk: int | None = None
    has_bias: bool = False
    normalize: bool = False
    metrics: bool = False
    kernel: Kernel = "torch"


class EngineResult(NamedTuple):
    """Per-row ``[R]`` / per-column ``[C]`` losses (zeros where not requested), arg-max of each
    row / column (``[R]``/``[C]`` long, empty without metrics), and the sum and number of the
    positives' logits (0-d, detached; the sum is 0 without metrics)."""

    row_loss: Tensor
    col_loss: Tensor
    row_argmax: Tensor
    col_argmax: Tensor
    positive_sum: Tensor
    positive_count: Tensor


class _BlockMetrics:
    """Row / column arg-max and the positives' logit sum, gathered block by block."""

    def __init__(self, tiles: Tiles, P: Pairs, enabled: bool) -> None:
        x, C = tiles.x, tiles.y.shape[0]
        self.tiles, self.P, self.enabled = tiles, P, enabled
        self.row_arg = torch.zeros(x.shape[0] if enabled else 0, dtype=torch.long, device=x.device)
        self.col_arg = torch.zeros(C if enabled else 0, dtype=torch.long, device=x.device)
        self.col_best = x.new_full((C if enabled else 0,), float("-inf"))
        self.pos_sum = x.new_zeros(())

    def __call__(self, a: int, b: int, S: Tensor, pos: Tensor | None) -> None:
        if not self.enabled:
            return
        self.row_arg[a:b] = S.argmax(1)
        cmax, carg = S.max(0)
        better = cmax > self.col_best
        self.col_best = torch.where(better, cmax, self.col_best)
        self.col_arg = torch.where(better, carg + a, self.col_arg)
        if self.P.single:
            self.pos_sum = self.pos_sum + S.diagonal(a + self.P.offset).sum()
        elif pos is not None:
            self.pos_sum = self.pos_sum + torch.mul(S, pos, out=self.tiles.buffer("work2", b - a)).sum()


class _PairwiseFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, o: EngineOptions):  # type: ignore[override]
        norms = None
        if o.normalize:
            (x, mx, nx), (y, my, ny) = unit(x), unit(y)
            norms = (mx, nx, my, ny)
        tiles = Tiles(x, y, scale, bias if o.has_bias else None, o.chunk)
        P = o.pairs
        seen = _BlockMetrics(tiles, P, o.metrics)
        if o.kind == "softmax":
            state, row_loss, col_loss = softmax_forward(tiles, P, o.label_smoothing, o.rows, o.cols, seen)
        else:
            state, row_loss = sigmoid_forward(tiles, P, seen)
            col_loss = x.new_zeros(y.shape[0])
        ctx.state, ctx.o, ctx.norms = state, o, norms
        ctx.save_for_backward(x, y, scale, bias)
        count = P.row_count(x.dtype).sum()
        out = (row_loss, col_loss, seen.row_arg, seen.col_arg, seen.pos_sum, count)
        ctx.mark_non_differentiable(*out[2:])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g_r: Tensor, g_c: Tensor, *_: Any):  # type: ignore[override]
        x, y, scale, bias = ctx.saved_tensors
        o: EngineOptions = ctx.o
        tiles = Tiles(x, y, scale, bias if o.has_bias else None, o.chunk)
        if o.kind == "softmax":
            gx, gy, gs, gb = softmax_backward(ctx.state, tiles, o.pairs, o.label_smoothing, o.rows, o.cols, g_r, g_c)
        else:
            gx, gy, gs, gb = sigmoid_backward(ctx.state, tiles, o.pairs, g_r)
        if ctx.norms is not None:
            mx, nx, my, ny = ctx.norms
            gx, gy = unit_backward(x, mx, nx, gx), unit_backward(y, my, ny, gy)
        return gx, gy, gs.reshape(scale.shape), (gb.reshape(bias.shape) if o.has_bias else None), None


def pairwise_loss(x: Tensor, y: Tensor, scale: Tensor, bias: Tensor | None, o: EngineOptions) -> EngineResult:
    """Run the engine on ``x [R, D]``, ``y [C, D]`` (same floating dtype), 0-d ``scale``/``bias``.

    Differentiable w.r.t. ``x``, ``y``, ``scale`` and ``bias``.
    """
    b = bias if bias is not None else x.new_zeros(())
    o = dataclasses.replace(o, has_bias=bias is not None)
    if o.cols and o.pairs.single and (o.pairs.offset != 0 or x.shape[0] != y.shape[0]):
        raise ValueError("column losses of the matching-pair layout need a square matrix with offset 0")
    # --- fused Triton path (triton_dispatch): same options, same result
    if x.dtype != torch.float64 and use_triton(o.kernel, x.device):
        from losskit_plugins.contrastive.triton_dispatch import fused_pairwise_loss  # (imports engine)

        return fused_pairwise_loss(x, y, scale, b, o)
    # ---
    return EngineResult(*_PairwiseFunction.apply(x, y, scale, b, o))
