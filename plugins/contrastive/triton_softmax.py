"""The softmax losses (``clip``, ``infonce``) on the fused kernels: forward sweeps, losses, and the
coefficients of ``dL/ds`` for the backward sweeps.

Same formulas as the PyTorch engine (:mod:`losskit_plugins.contrastive.engine`), written with
per-row log-sum-exps ``lse_i`` (all columns) and ``ln_i`` (negatives only, ``-inf`` when
none). Per row ``i`` with positives ``P_i`` and upstream gradient ``g_i``, ``n`` columns::

    matching pairs:  L_i = lse_i - (1 - eps) s_ip - eps mean_j s_ij
                     dL/ds_ij = g_i e^{s_ij - lse_i} - eps g_i / n - [j = p] (1 - eps) g_i
    groups / mask:   L_i = (1 - eps) / |P_i| sum_p softplus(ln_i - s_ip) + eps (lse_i - mean_j s_ij)   (0 if P_i is empty)
                     dL/ds_ij = eps g_i e^{s_ij - lse_i} - eps g_i / n
                                + [j negative] w_i beta_i e^{s_ij - ln_i} - [j in P_i] w_i sigmoid(ln_i - s_ij),
                     w_i = (1 - eps) g_i / |P_i|,  beta_i = sum_p sigmoid(ln_i - s_ip)

and the same per column. With groups or a mask the positives' sums need ``ln_i`` first:
one more sweep per direction (``stats_sweep(..., "positives")``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from losskit_plugins.contrastive.engine import EngineOptions
from losskit_plugins.contrastive.triton_sweep import Side, Stats, coefficients, stats_sweep

__all__ = ["Direction", "softmax_coefficients", "softmax_forward"]


@dataclass
class Direction:
    """One direction's statistics (``[n]`` fp32): log-sum-exps, and with groups or a mask the
    negatives-only log-sum-exp, the positives' sigmoid sums and counts."""

    lse: Tensor
    ln: Tensor | None = None
    beta: Tensor | None = None
    count: Tensor | None = None


def _mean_logits(a: Side, b: Side, scale: Tensor, bias: Tensor) -> Tensor:
    """``[n]`` mean of each row's logits in ``O((n + m) D)``: ``scale ra_i a_i . sum_j rb_j b_j / m + bias``."""
    col_sum = b.inv_norm @ b.feats.float()  # [D] sum of the (unit) columns
    return (a.feats.float() @ col_sum) * a.inv_norm * scale / b.feats.shape[0] + bias


def _direction(a: Side, b: Side, scale: Tensor, bias: Tensor, o: EngineOptions, s_pos: Tensor | None) -> tuple[Tensor, Direction, Stats]:
    """Loss ``[n]`` of the rows of ``a`` against ``b``, its statistics and the first sweep's output."""
    eps = o.label_smoothing
    st = stats_sweep(a, b, scale, bias, "softmax", argmax=o.metrics, neg=s_pos is None)
    mean = _mean_logits(a, b, scale, bias) if eps > 0 else None
    smooth = eps * (st.total - mean) if mean is not None else 0.0
    if s_pos is not None:  # matching pairs
        return (1 - eps) * (st.total - s_pos) + smooth, Direction(st.total), st
    assert st.second is not None
    pt = stats_sweep(a, b, scale, bias, "positives", lneg=st.second)
    assert pt.count is not None and pt.second is not None
    loss = (1 - eps) * pt.total / pt.count.clamp_min(1) + smooth
    loss = torch.where(pt.count > 0, loss, torch.zeros_like(loss))
    return loss, Direction(st.total, st.second, pt.second, pt.count), st


def softmax_forward(
    rows: Side, cols: Side, scale: Tensor, bias: Tensor, o: EngineOptions, s_pos: Tensor | None
) -> tuple[Tensor, Tensor, list[Direction | None], Stats, Tensor]:
    """``(row_loss [R], col_loss [C], [row, column statistics], the row sweep's output (arg-max and
    positive logit sums with metrics), col_argmax)``; ``s_pos [R]``: the matching pairs' logits
    (None with groups or a mask)."""
    row_loss, d_r, st_r = _direction(rows, cols, scale, bias, o, s_pos)
    col_loss, d_c, col_arg = rows.feats.new_zeros(cols.feats.shape[0], dtype=torch.float32), None, st_r.argmax[:0]
    if o.cols:
        col_loss, d_c, st_c = _direction(cols, rows, scale, bias, o, s_pos)
        col_arg = st_c.argmax
    return row_loss, col_loss, [d_r, d_c], st_r, col_arg


def _side_coefficients(d: Direction, g: Tensor, eps: float, n_other: int) -> Tensor:
    """``[7, n]`` coefficients of one direction (formulas in the module docstring)."""
    if d.count is None:
        return coefficients(g.numel(), g, c=g, lse=d.lse, k=-eps * g / n_other, d=-(1 - eps) * g)
    assert d.beta is not None and d.ln is not None
    w = torch.where(d.count > 0, g, torch.zeros_like(g))  # rows without a positive have loss 0
    per = (1 - eps) * w / d.count.clamp_min(1)
    return coefficients(g.numel(), g, c=eps * w, lse=d.lse, k=-eps * w / n_other, nc=per * d.beta, ln=d.ln, pc=-per)


def softmax_coefficients(dirs: list[Direction | None], o: EngineOptions, g_r: Tensor, g_c: Tensor, R: int, C: int) -> tuple[Tensor | None, Tensor | None]:
    """The rows' and the columns' coefficient matrices (None for a direction not computed)."""
    d_r, d_c = dirs
    assert d_r is not None
    rows = _side_coefficients(d_r, g_r, o.label_smoothing, C) if o.rows else None
    cols = _side_coefficients(d_c, g_c, o.label_smoothing, R) if d_c is not None else None
    return rows, cols
