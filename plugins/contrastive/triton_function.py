"""The autograd function of the fused tiled Triton path of the contrastive engine.

:class:`FusedPairwise` computes exactly what
:func:`losskit_plugins.contrastive.engine.pairwise_loss` computes (same
:class:`EngineOptions`, same :class:`EngineResult`, same formulas: see the engine's
docstring) with the kernels of :mod:`losskit_plugins.contrastive.triton_kernels`:

- forward: one sweep of the logit matrix per direction (row statistics; for the softmax
  column direction the same kernel on the transposed problem; with groups or a mask one more
  per direction for the positives' terms), keeping only per-row / per-column log-sum-exps
  (softmax) or softplus sums (sigmoid), ``O(R + C)``;
- backward: two sweeps (rows own ``dL/dx``, columns own ``dL/dy``), each recomputing its
  blocks and forming the whole ``dL/ds`` (positives, label smoothing) in registers; the
  temperature's and bias's gradients and the fused normalisation's backward are
  ``O((R + C) D)`` PyTorch.

Extra memory: ``O((R + C) D)`` fp32 (the gradient accumulators and unit features in
backward) plus ``O(R + C)``; no ``R x C`` buffer, no data-dependent shape. No host synchronisation: scale and
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
from losskit_plugins.contrastive.normalize import EPS, unit, unit_backward
from losskit_plugins.contrastive.triton_softmax import softmax_coefficients, softmax_forward
from losskit_plugins.contrastive.triton_sweep import Side, coefficients, grad_sweep, stats_sweep

__all__ = ["FusedPairwise"]


def _diagonal_logits(x: Tensor, y: Tensor, rx: Tensor, ry: Tensor, scale: Tensor, bias: Tensor, offset: int) -> Tensor:
    """``[R]`` logits of the matching pairs ``(i, i + offset)``, fp32, ``O(R D)``."""
    R = x.shape[0]
    dots = torch.linalg.vecdot(x.float(), y[offset : offset + R].float())
    return dots * rx * ry[offset : offset + R] * scale + bias


def _inverse_norms(t: Tensor, normalize: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(1 / max(|t_i|, eps) [N] fp32, m, n)`` with ``|t_i| = m_i n_i`` (scale-safe, as the engine's
    :func:`~losskit_plugins.contrastive.normalize.unit`); ones and empty tensors without normalisation."""
    if not normalize:
        empty = t.new_empty(0, dtype=torch.float32)
        return torch.ones(t.shape[0], dtype=torch.float32, device=t.device), empty, empty
    m = t.abs().amax(1).float()
    m = torch.where(m > 0, m, torch.ones_like(m))  # [N]
    n = torch.linalg.vector_norm(t.float() / m[:, None], dim=1)  # [N]
    big = n * m > EPS
    return torch.where(big, n.clamp_min(1e-30).reciprocal() / m, torch.full_like(m, 1 / EPS)), m, n


def _scalars(scale: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """``[1]`` fp32 copies the kernels read from device memory (no host synchronisation)."""
    return scale.detach().float().reshape(1), bias.detach().float().reshape(1)


class FusedPairwise(torch.autograd.Function):
    """``(x, y, scale, bias, options) -> (row_loss [R], col_loss [C], row_argmax, col_argmax, positive_sum,
    positive_count)`` (the engine's result)."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, o: EngineOptions):  # type: ignore[override]
        P = o.pairs
        (rx, mx, nx), (ry, my, ny) = _inverse_norms(x, o.normalize), _inverse_norms(y, o.normalize)
        sc, bi = _scalars(scale, bias)
        rows, cols = Side.of(x, rx, P, True), Side.of(y, ry, P, False)
        dirs: list = []
        if o.kind == "softmax":
            s_diag = _diagonal_logits(x, y, rx, ry, sc, bi, P.offset) if P.single else None
            row_loss, col_loss, dirs, st, col_arg = softmax_forward(rows, cols, sc, bi, o, s_diag)
        else:
            st = stats_sweep(rows, cols, sc, bi, "sigmoid", argmax=o.metrics)
            row_loss, col_loss, col_arg = st.total, x.new_zeros(y.shape[0], dtype=torch.float32), st.argmax[:0]
        if o.metrics and col_arg.numel() == 0:
            col_arg = stats_sweep(cols, rows, sc, bi, "argmax", argmax=True).argmax
        pos_sum = st.positive_sum.sum() if st.positive_sum is not None else row_loss.new_zeros(())
        pos_count = P.row_count(torch.float32).sum()
        ctx.o, ctx.dirs = o, dirs
        ctx.save_for_backward(x, y, rx, ry, mx, nx, my, ny, scale, bias)
        out = (row_loss, col_loss, st.argmax, col_arg, pos_sum, pos_count)
        ctx.mark_non_differentiable(*out[2:])
        dtype = torch.promote_types(x.dtype, torch.float32)
        return (row_loss.to(dtype), col_loss.to(dtype), *out[2:])

    @staticmethod
    @once_differentiable
    def backward(ctx, g_r: Tensor, g_c: Tensor, *_: Any):  # type: ignore[override]
        x, y, rx, ry, mx, nx, my, ny, scale, bias = ctx.saved_tensors
        o: EngineOptions = ctx.o
        sc, bi = _scalars(scale, bias)
        g_r, g_c = g_r.float().contiguous(), g_c.float().contiguous()  # autograd may hand expanded gradients
        rows, cols = Side.of(x, rx, o.pairs, True), Side.of(y, ry, o.pairs, False)
        if o.kind == "softmax":
            rows.coef, cols.coef = softmax_coefficients(ctx.dirs, o, g_r, g_c, x.shape[0], y.shape[0])
        else:
            rows.coef = coefficients(x.shape[0], g_r, c=g_r)
        acc_x, gsum = grad_sweep(rows, cols, sc, bi, o.kind)  # [R, D] sum_j dL/ds_ij w_j
        acc_y, _ = grad_sweep(cols, rows, sc, bi, o.kind)  # [C, D] sum_i dL/ds_ij u_i
        u = unit(x.float())[0] if o.normalize else x.float()  # [R, D] fp32 unit rows (or the rows)
        g_scale = torch.dot(u.reshape(-1), acc_x.reshape(-1))  # sum_ij dL/ds_ij (s_ij - bias) / scale
        gu, gw = acc_x.mul_(scale.float()), acc_y.mul_(scale.float())  # dL/du, dL/dw
        if o.normalize:
            gu = unit_backward(u, mx, nx, gu)
            del u
            gw = unit_backward(unit(y.float())[0], my, ny, gw)
        return (gu.to(x.dtype), gw.to(y.dtype), g_scale.to(scale.dtype).reshape(scale.shape),
                gsum.sum().to(bias.dtype).reshape(bias.shape) if o.has_bias else None, None)
