"""The softmax losses from the fused kernels' log-sum-exps, and the coefficients of their backward.

Same formulas as :mod:`losskit_plugins.contrastive.engine` (its docstring), written with
per-row log-sum-exps ``lse_i`` (all columns) and ``lneg_i`` (negatives only, ``-inf`` when
none) instead of shifted sums. Per row ``i`` with positives ``P_i``, ``w_i = (1 - eps) g_i / |P_i|``::

    matching pairs:  L_i = lse_i - (1 - eps) s_ip - eps mean_j s_ij
                     dL/ds_ij = g_i e^{s_ij - lse_i} - (1 - eps) g_i [j = p] - eps g_i / C
    grouped:         L_i = (1 - eps) mean_p softplus(lneg_i - s_ip) + eps (lse_i - mean_j s_ij)   (0 if P_i is empty)
                     dL/ds_ij = eps g_i e^{s_ij - lse_i} + [j negative] beta_i e^{s_ij - lneg_i}
                                - [j in P_i] w_i sigmoid(lneg_i - s_ij) - eps g_i / C,
                     beta_i = w_i sum_p sigmoid(lneg_i - s_ip)

(the same per column). The kernels form the dense exponential terms; the positive and
constant terms are the ``v`` / ``k`` corrections of the engine's gradient finish.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from losskit_plugins.contrastive.engine import EngineOptions, softplus
from losskit_plugins.contrastive.triton_sweep import Coef, Stats

__all__ = ["Coefficients", "softmax_coefficients", "softmax_losses"]


def _counts(idx: Tensor, n: int) -> Tensor:
    """``[n]`` fp32 number of positives per row (no host synchronisation, unlike ``bincount``)."""
    return torch.zeros(n, dtype=torch.float32, device=idx.device).index_add_(0, idx, torch.ones_like(idx, dtype=torch.float32))


def _mean_logits(x: Tensor, y: Tensor, rx: Tensor, ry: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """``[R]`` mean over the columns of ``s_ij`` in ``O((R + C) D)``: ``scale rx_i x_i . sum_j ry_j y_j / C + bias``."""
    col_sum = ry @ y.float()  # [D] sum of the (unit) columns
    return (x.float() @ col_sum) * rx * scale / y.shape[0] + bias


def _direction(st: Stats, idx: Tensor, count: Tensor | None, mean: Tensor | None, s_pos: Tensor, eps: float) -> Tensor:
    """Per-row loss of one direction (formulas in the module docstring)."""
    if count is None:  # matching pairs: row i's positive is s_pos[i]
        return st.total - (1 - eps) * s_pos - (eps * mean if mean is not None else 0.0)
    assert st.neg is not None
    smooth = eps * (st.total - mean) if mean is not None else 0.0
    per_pos = softplus(st.neg[idx] - s_pos)  # [P]
    mean_pos = torch.zeros_like(st.total).index_add_(0, idx, per_pos) / count.clamp_min(1)
    return torch.where(count > 0, (1 - eps) * mean_pos + smooth, torch.zeros_like(mean_pos))


def softmax_losses(
    x: Tensor, y: Tensor, rx: Tensor, ry: Tensor, scale: Tensor, bias: Tensor, s_pos: Tensor,
    o: EngineOptions, rows: Stats, cols: Stats | None,
) -> tuple[Tensor, Tensor, dict[str, Tensor | Stats | None]]:
    """``(row_loss [R], col_loss [C], what backward needs)`` from the sweeps' statistics."""
    P, eps = o.pairs, o.label_smoothing
    grouped = not P.single
    R, C = x.shape[0], y.shape[0]
    count_r = _counts(P.rows, R) if grouped else None
    count_c = _counts(P.cols, C) if grouped and cols is not None else None
    mean_r = _mean_logits(x, y, rx, ry, scale, bias) if eps > 0 else None
    row_loss = _direction(rows, P.rows, count_r, mean_r, s_pos, eps) if o.rows else x.new_zeros(R, dtype=torch.float32)
    col_loss = x.new_zeros(C, dtype=torch.float32)
    if cols is not None:
        mean_c = _mean_logits(y, x, ry, rx, scale, bias) if eps > 0 else None
        col_loss = _direction(cols, P.cols, count_c, mean_c, s_pos, eps)
    return row_loss, col_loss, {"rows": rows, "cols": cols, "count_r": count_r, "count_c": count_c}


@dataclass
class Coefficients:
    """Backward coefficients: per side (``cols`` None without the column direction), the
    sparse positive term ``v [P]`` and the label-smoothing constants ``k_r [R]``, ``k_c [C]``."""

    rows: Coef
    cols: Coef | None
    v: Tensor
    k_r: Tensor | None
    k_c: Tensor | None


def _side(st: Stats, g: Tensor, idx: Tensor, count: Tensor | None, s_pos: Tensor, eps: float) -> tuple[Coef, Tensor]:
    """One side's coefficients and its part of ``v`` (``g`` already 0 on rows without positives)."""
    if count is None:
        return Coef(g, st.total), -(1 - eps) * g[idx]
    assert st.neg is not None
    w = (1 - eps) * g / count.clamp_min(1)
    sig = torch.sigmoid(st.neg[idx] - s_pos)  # [P]; 0 where the row has no negative
    beta = w * torch.zeros_like(w).index_add_(0, idx, sig)
    lneg = torch.where(torch.isfinite(st.neg), st.neg, torch.zeros_like(st.neg))  # rows without negatives: unused
    return Coef(eps * g, st.total, beta, lneg), -w[idx] * sig


def softmax_coefficients(saved: dict, o: EngineOptions, g_r: Tensor, g_c: Tensor, s_pos: Tensor, R: int, C: int) -> Coefficients:
    """The coefficients of ``dL/ds`` for upstream gradients ``g_r [R]``, ``g_c [C]``."""
    P, eps = o.pairs, o.label_smoothing
    g_r = g_r if o.rows else torch.zeros_like(g_r)
    if saved["count_r"] is not None:  # grouped: rows (columns) without a positive have loss 0
        g_r = torch.where(saved["count_r"] > 0, g_r, torch.zeros_like(g_r))
    if saved["count_c"] is not None:
        g_c = torch.where(saved["count_c"] > 0, g_c, torch.zeros_like(g_c))
    rows, v = _side(saved["rows"], g_r, P.rows, saved["count_r"], s_pos, eps)
    cols = None
    if saved["cols"] is not None:
        cols, v_c = _side(saved["cols"], g_c, P.cols, saved["count_c"], s_pos, eps)
        v = v + v_c
    k_r = eps * g_r / C if eps > 0 else None
    k_c = eps * g_c / R if eps > 0 and cols is not None else None
    return Coefficients(rows, cols, v, k_r, k_c)
