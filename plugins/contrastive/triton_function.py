"""The autograd function of the fused tiled Triton path of the contrastive engine.

:class:`FusedPairwise` computes exactly what
:func:`losskit_plugins.contrastive.engine.pairwise_loss` computes (same
:class:`EngineOptions`, same :class:`EngineResult`, same formulas: see the engine's
docstring) with the kernels of :mod:`losskit_plugins.contrastive.triton_kernels`:

- forward: one sweep of the logit matrix per direction (row statistics; for the softmax
  column direction the same kernel on the transposed problem), keeping only per-row /
  per-column log-sum-exps (softmax) or softplus sums (sigmoid), ``O(R + C)``;
- backward: two sweeps (rows own ``dL/dx``, columns own ``dL/dy``), each recomputing its
  blocks; the sparse positive terms, label smoothing's constant terms, the temperature's
  and bias's gradients and the fused normalisation's backward are ``O((R + C) D)`` PyTorch
  (the engine's own gradient finish).

Extra memory: ``O((R + C) D)`` fp32 (the gradient accumulators and unit features in
backward) plus ``O(R + C + P)``; no ``R x C`` buffer. No host synchronisation: scale and
bias are read by the kernels from device memory. fp16 / bf16 features are the ``tl.dot``
operands as they are (fp32 accumulation, fp32 statistics); fp32 features use the precision
``torch.get_float32_matmul_precision()`` asks for ("highest": IEEE fp32, "high": 3xTF32,
"medium": TF32).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from losskit_plugins.contrastive.engine import EngineOptions
from losskit_plugins.contrastive.engine import _finish as finish_gradients  # shared with the PyTorch engine
from losskit_plugins.contrastive.engine import _unit_backward as unit_backward
from losskit_plugins.contrastive.pairs import Pairs
from losskit_plugins.contrastive.triton_softmax import softmax_coefficients, softmax_losses
from losskit_plugins.contrastive.triton_sweep import Coef, Side, grad_sweep, stats_sweep

__all__ = ["FusedPairwise"]


def _positive_logits(x: Tensor, y: Tensor, rx: Tensor, ry: Tensor, scale: Tensor, bias: Tensor, P: Pairs) -> Tensor:
    """``[P]`` logits of the positive pairs, fp32, ``O(P D)``."""
    if P.single:
        yy = y[P.offset : P.offset + P.num_rows]
        dots = torch.linalg.vecdot(x.float(), yy.float()) * rx * ry[P.offset : P.offset + P.num_rows]
    else:
        dots = torch.linalg.vecdot(x[P.rows].float(), y[P.cols].float()) * rx[P.rows] * ry[P.cols]
    return dots * scale + bias


def _inverse_norms(t: Tensor, normalize: bool) -> tuple[Tensor, Tensor]:
    """``(1 / max(|t_i|, eps), |t_i|)`` in fp32 (ones and None without normalisation)."""
    if not normalize:
        return torch.ones(t.shape[0], dtype=torch.float32, device=t.device), t.new_empty(0)
    norm = torch.linalg.vector_norm(t, dim=1, dtype=torch.float32)
    return 1.0 / norm.clamp_min(1e-12), norm


class FusedPairwise(torch.autograd.Function):
    """``(x, y, scale, bias, options) -> (row_loss [R], col_loss [C], row_argmax, col_argmax, positive_logits [P])``."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, o: EngineOptions):  # type: ignore[override]
        P = o.pairs
        (rx, nx), (ry, ny) = _inverse_norms(x, o.normalize), _inverse_norms(y, o.normalize)
        scale32, bias32 = scale.detach().float().reshape(1), bias.detach().float().reshape(1)
        rows, cols = Side.of(x, rx, P, True), Side.of(y, ry, P, False)
        s_pos = _positive_logits(x, y, rx, ry, scale32, bias32, P)  # [P]
        R, C = x.shape[0], y.shape[0]
        empty = torch.empty(0, dtype=torch.long, device=x.device)
        row_arg, col_arg = empty, empty
        if o.kind == "softmax":
            r_stats = stats_sweep(rows, cols, scale32, bias32, "softmax", argmax=o.metrics)
            c_stats = stats_sweep(cols, rows, scale32, bias32, "softmax", argmax=o.metrics) if o.cols else None
            row_loss, col_loss, saved = softmax_losses(x, y, rx, ry, scale32, bias32, s_pos, o, r_stats, c_stats)
            row_arg = r_stats.argmax
            col_arg = c_stats.argmax if c_stats is not None else col_arg
        else:
            r_stats = stats_sweep(rows, cols, scale32, bias32, "sigmoid", argmax=o.metrics)
            row_loss = r_stats.total - torch.zeros_like(r_stats.total).index_add_(0, P.rows, s_pos)
            col_loss, saved = x.new_zeros(C, dtype=torch.float32), {}
            row_arg = r_stats.argmax
        if o.metrics and col_arg.numel() == 0:
            col_arg = stats_sweep(cols, rows, scale32, bias32, "argmax", argmax=True).argmax
        ctx.o, ctx.saved = o, saved
        ctx.save_for_backward(x, y, rx, ry, nx, ny, scale, bias, s_pos)
        ctx.mark_non_differentiable(row_arg, col_arg, s_pos)
        dtype = torch.promote_types(x.dtype, torch.float32)
        return row_loss.to(dtype), col_loss.to(dtype), row_arg, col_arg, s_pos.to(dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_r: Tensor, g_c: Tensor, *_: Any):  # type: ignore[override]
        x, y, rx, ry, nx, ny, scale, bias, s_pos = ctx.saved_tensors
        o: EngineOptions = ctx.o
        P = o.pairs
        scale32, bias32 = scale.detach().float().reshape(1), bias.detach().float().reshape(1)
        g_r, g_c = g_r.float(), g_c.float()
        rows, cols = Side.of(x, rx, P, True), Side.of(y, ry, P, False)
        if o.kind == "softmax":
            co = softmax_coefficients(ctx.saved, o, g_r, g_c, s_pos, x.shape[0], y.shape[0])
            rows.coef, cols.coef = co.rows, co.cols
            v, k_r, k_c = co.v, co.k_r, co.k_c
        else:
            rows.coef = Coef(g_r)
            v, k_r, k_c = -g_r[P.rows], None, None
        acc_x, gsum = grad_sweep(rows, cols, scale32, bias32, o.kind)
        acc_y, _ = grad_sweep(cols, rows, scale32, bias32, o.kind)
        u = x.to(torch.float32, copy=True).mul_(rx[:, None])  # [R, D] fp32 unit rows (or the rows), one allocation
        w = y.to(torch.float32, copy=True).mul_(ry[:, None])  # [C, D]
        gu, gw, g_scale, g_bias = finish_gradients(u, w, scale.float(), P, acc_x, acc_y, v, k_r, k_c, gsum.sum())
        if o.normalize:
            gu, gw = unit_backward(u, nx, gu), unit_backward(w, ny, gw)
        return (gu.to(x.dtype), gw.to(y.dtype), g_scale.to(scale.dtype).reshape(scale.shape),
                g_bias.to(bias.dtype).reshape(bias.shape) if o.has_bias else None, None)
