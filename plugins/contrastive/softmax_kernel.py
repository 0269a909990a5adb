"""The softmax kernel of the engine (``clip``, ``infonce``): forward statistics and backward.

Per row ``i`` with positives ``P_i``, negatives ``N_i`` and label smoothing ``eps`` (formula
and references in :mod:`losskit_plugins.contrastive.engine`), every log-sum-exp is
shifted by the maximum of the very terms it sums (per row, per column, over the negatives
only where there are several positives), so each sum is at least 1 and nothing can
underflow to ``log 0``: there is no guard to check and no host synchronisation. Columns
accumulate online over the row tiles (flash-attention style: running max and rescaled
sum).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from losskit_plugins.contrastive.pairs import Pairs
from losskit_plugins.contrastive.tiles import GradAccumulator, Tiles, softplus_

__all__ = ["SoftmaxStats", "softmax_backward", "softmax_forward"]

_NEG_INF = float("-inf")


@dataclass
class SoftmaxStats:
    """What forward computes and backward reuses: ``[R]`` row / ``[C]`` column statistics
    (None where a direction or term is not computed) and the dense logits."""

    lse_r: Tensor | None  # log-sum-exp over all columns (one positive per row, or eps > 0)
    lse_c: Tensor | None
    ln_r: Tensor | None  # log-sum-exp over the negatives only (several positives)
    ln_c: Tensor | None
    beta_r: Tensor | None  # sum over the positives p of sigmoid(ln - s_p)
    beta_c: Tensor | None
    row_count: Tensor
    col_count: Tensor
    saved: Tensor | None  # [R, C] logits of the dense path
    exp_r: Tensor | None = None  # dense, one positive per row: [R, C] exp(s - row max), and the row sums [R]
    sum_r: Tensor | None = None
    exp_c: Tensor | None = None  # ... exp(s - column max) and the column sums [C]
    sum_c: Tensor | None = None


def _safe(m: Tensor) -> Tensor:
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def _row_lse(S: Tensor, work: Tensor, exclude: Tensor | None = None) -> Tensor:
    """``[n]`` log-sum-exp of each row of ``S [n, C]`` (over the entries not in ``exclude``;
    ``-inf`` for a row with none), shifted by its own max."""
    T = S if exclude is None else work.copy_(S).masked_fill_(exclude, _NEG_INF)
    m = _safe(T.amax(1))
    return torch.sub(T, m[:, None], out=work).exp_().sum(1).log_().add_(m)


class _ColumnLSE:
    """Online log-sum-exp of each column over row blocks: running max ``M`` and sum."""

    def __init__(self, like: Tensor, n: int) -> None:
        self.M = like.new_full((n,), _NEG_INF)
        self.total = like.new_zeros(n)

    def update(self, S: Tensor, work: Tensor, exclude: Tensor | None = None) -> None:
        T = S if exclude is None else work.copy_(S).masked_fill_(exclude, _NEG_INF)
        new = torch.maximum(self.M, T.amax(0))
        shift = _safe(new)
        self.total = self.total * torch.exp(self.M - shift) + torch.sub(T, shift, out=work).exp_().sum(0)
        self.M = new

    def result(self) -> Tensor:
        return self.total.log() + _safe(self.M)


def _positive_terms(S: Tensor, ln: Tensor, pos: Tensor, dim: int, work: Tensor, work2: Tensor) -> tuple[Tensor, Tensor]:
    """Sums over the positives along ``dim`` of ``softplus(ln - s)`` and ``sigmoid(ln - s)``
    (``ln`` broadcast against ``S``)."""
    Z = torch.sub(ln, S, out=work)  # [n, C]
    beta = torch.sigmoid(Z, out=work2).mul_(pos).sum(dim)
    return softplus_(Z, work2).mul_(pos).sum(dim), beta


def softmax_forward(
    tiles: Tiles, P: Pairs, eps: float, rows: bool, cols: bool, on_block: Callable[[int, int, Tensor, Tensor | None], None]
) -> tuple[SoftmaxStats, Tensor, Tensor]:
    """Per-row ``[R]`` and per-column ``[C]`` losses (zeros where not requested) and the state
    backward needs; ``on_block(a, b, s[a:b], positives)`` sees every block (metrics)."""
    x, y = tiles.x, tiles.y
    R, C = x.shape[0], y.shape[0]
    single, need_lse = P.single, P.single or eps > 0
    if single and tiles.dense:
        return _dense_single_forward(tiles, P, eps, rows, cols, on_block)
    lse_r = x.new_zeros(R) if rows and need_lse else None
    ln_r = beta_r = sp_r = None
    if rows and not single:
        ln_r, beta_r, sp_r = x.new_zeros(R), x.new_zeros(R), x.new_zeros(R)
    s_pos = x.new_zeros(R) if single else None  # [R] logit of each row's positive
    col_all = _ColumnLSE(x, C) if cols and need_lse else None
    col_neg = _ColumnLSE(x, C) if cols and not single else None
    for a, b, S in tiles.blocks():
        n = b - a
        work = tiles.buffer("work", n)
        pos = None if single else P.positives(a, b, out=tiles.buffer("positives", n, torch.bool))
        if s_pos is not None:
            s_pos[a:b] = S.diagonal(a + P.offset)
        if lse_r is not None:
            lse_r[a:b] = _row_lse(S, work)
        if ln_r is not None and beta_r is not None and sp_r is not None:
            ln_r[a:b] = _row_lse(S, work, pos)
            sp_r[a:b], beta_r[a:b] = _positive_terms(S, ln_r[a:b, None], pos, 1, work, tiles.buffer("work2", n))
        if col_all is not None:
            col_all.update(S, work)
        if col_neg is not None:
            col_neg.update(S, work, pos)
        on_block(a, b, S, pos)
    saved = tiles.buffer("logits", R) if tiles.dense else None
    st = SoftmaxStats(
        lse_r=lse_r, lse_c=None if col_all is None else col_all.result(), ln_r=ln_r,
        ln_c=None if col_neg is None else col_neg.result(), beta_r=beta_r, beta_c=None,
        row_count=P.row_count(x.dtype), col_count=P.col_count(x.dtype), saved=saved,
    )
    sp_c = _column_positive_terms(tiles, P, st) if col_neg is not None else None
    row_loss = _loss(st.lse_r, sp_r, s_pos, st.row_count, eps, lambda: x @ y.sum(0), tiles, C) if rows else x.new_zeros(R)
    col_loss = _loss(st.lse_c, sp_c, s_pos, st.col_count, eps, lambda: y @ x.sum(0), tiles, R) if cols else x.new_zeros(C)
    return st, row_loss, col_loss


def _dense_single_forward(
    tiles: Tiles, P: Pairs, eps: float, rows: bool, cols: bool, on_block: Callable[[int, int, Tensor, Tensor | None], None]
) -> tuple[SoftmaxStats, Tensor, Tensor]:
    """Dense, one positive per row: keep ``exp(s - row max)`` and ``exp(s - column max)``
    (the latter in place of the logits), so backward needs no ``exp`` (``2 x R*C`` memory, as
    the cross-entropy it replaces needs for its two log-softmax outputs)."""
    x, y = tiles.x, tiles.y
    R, C = x.shape[0], y.shape[0]
    S = tiles.logits(0, R)  # [R, C]
    cmax = S.amax(0) if cols else None
    E_r = torch.empty_like(S) if rows else None
    rmax, sum_r, sum_c = x.new_zeros(R), x.new_zeros(R), x.new_zeros(C)
    s_pos = x.new_zeros(R)
    for a, b in tiles.ranges(0, R):
        Sb = S[a:b]
        on_block(a, b, Sb, None)
        s_pos[a:b] = Sb.diagonal(a + P.offset)
        if E_r is not None:
            rmax[a:b] = Sb.amax(1)
            sum_r[a:b] = torch.sub(Sb, rmax[a:b, None], out=E_r[a:b]).exp_().sum(1)
        if cmax is not None:
            sum_c += Sb.sub_(cmax).exp_().sum(0)  # S becomes exp(s - column max)
    st = SoftmaxStats(
        lse_r=sum_r.log() + rmax if rows else None, lse_c=sum_c.log() + cmax if cmax is not None else None,
        ln_r=None, ln_c=None, beta_r=None, beta_c=None, row_count=P.row_count(x.dtype), col_count=P.col_count(x.dtype),
        saved=None, exp_r=E_r, sum_r=sum_r, exp_c=S if cols else None, sum_c=sum_c,
    )
    row_loss = _loss(st.lse_r, None, s_pos, st.row_count, eps, lambda: x @ y.sum(0), tiles, C) if rows else x.new_zeros(R)
    col_loss = _loss(st.lse_c, None, s_pos, st.col_count, eps, lambda: y @ x.sum(0), tiles, R) if cols else x.new_zeros(C)
    return st, row_loss, col_loss


def _column_positive_terms(tiles: Tiles, P: Pairs, st: SoftmaxStats) -> Tensor:
    """Second pass over the blocks (the dense logits, or recomputed tiles) once each column's
    negative log-sum-exp is known: sets ``st.beta_c``, returns the columns' softplus sums."""
    assert st.ln_c is not None
    C = tiles.y.shape[0]
    sp_c, beta_c = tiles.x.new_zeros(C), tiles.x.new_zeros(C)
    for a, b, S in tiles.blocks(st.saved):
        pos = P.positives(a, b, out=tiles.buffer("positives", b - a, torch.bool))
        sp, beta = _positive_terms(S, st.ln_c[None, :], pos, 0, tiles.buffer("work", b - a), tiles.buffer("work2", b - a))
        sp_c += sp
        beta_c += beta
    st.beta_c = beta_c
    return sp_c


def _loss(
    lse: Tensor | None, sp: Tensor | None, s_pos: Tensor | None, count: Tensor, eps: float,
    other_sum: Callable[[], Tensor], tiles: Tiles, n_other: int,
) -> Tensor:
    """One direction's ``[n]`` loss from its statistics."""
    smooth = None
    if eps > 0:
        assert lse is not None
        sums = other_sum() * tiles.scale + (n_other * tiles.bias if tiles.bias is not None else 0)  # [n] sum_j s_ij
        smooth = eps * (lse - sums / n_other)
    rest = 0 if smooth is None else smooth
    if sp is None:  # one positive per row: (label-smoothed) cross-entropy
        assert lse is not None and s_pos is not None
        return (1 - eps) * (lse - s_pos) + rest
    loss = (1 - eps) * sp / count.clamp_min(1) + rest
    return torch.where(count > 0, loss, torch.zeros_like(loss))


@dataclass
class _Coefficients:
    """One direction's part of ``dL/ds`` (``[n]`` vectors, broadcast along the other axis)::

        A * e^{s - lse} + neg * Nc * e^{s - ln} + pos * Pc * sigmoid(ln - s) + K (+ D on the diagonal)
    """

    lse: Tensor | None = None
    A: Tensor | None = None
    E: Tensor | None = None  # saved [R, C] exp(s - max) with its sums: A * E / sums replaces A * e^{s - lse}
    sums: Tensor | None = None
    ln: Tensor | None = None
    Nc: Tensor | None = None
    Pc: Tensor | None = None
    K: Tensor | None = None
    D: Tensor | None = None


def _coefficients(
    g: Tensor, count: Tensor, lse: Tensor | None, ln: Tensor | None, beta: Tensor | None, eps: float, single: bool, n_other: int
) -> _Coefficients:
    K = -eps * g / n_other if eps > 0 else None
    if single:
        return _Coefficients(lse=lse, A=g, K=K, D=-(1 - eps) * g)
    assert beta is not None
    w = torch.where(count > 0, g, torch.zeros_like(g))  # rows without a positive have loss 0
    K = -eps * w / n_other if eps > 0 else None
    per = (1 - eps) * w / count.clamp_min(1)
    return _Coefficients(lse=lse if eps > 0 else None, A=eps * w if eps > 0 else None, ln=ln, Nc=per * beta, Pc=-per, K=K)


def softmax_backward(
    st: SoftmaxStats, tiles: Tiles, P: Pairs, eps: float, rows: bool, cols: bool, g_r: Tensor, g_c: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients w.r.t. ``x``, ``y``, the scale and the bias, block by block."""
    R, C = tiles.x.shape[0], tiles.y.shape[0]
    directions: list[tuple[_Coefficients, Callable[[Tensor, int, int], Tensor]]] = []
    if rows:
        co = _coefficients(g_r, st.row_count, st.lse_r, st.ln_r, st.beta_r, eps, P.single, C)
        co.E, co.sums = st.exp_r, st.sum_r
        directions.append((co, lambda t, a, b: t[a:b, None]))
    if cols:
        co = _coefficients(g_c, st.col_count, st.lse_c, st.ln_c, st.beta_c, eps, P.single, R)
        co.E, co.sums = st.exp_c, st.sum_c
        directions.append((co, lambda t, a, b: t[None, :]))
    acc = GradAccumulator(tiles.x, tiles.y)
    saved_exp = st.exp_r is not None or st.exp_c is not None
    blocks = ((a, b, None) for a, b in tiles.ranges(0, R)) if saved_exp else tiles.blocks(st.saved)
    for a, b, S in blocks:
        n = b - a
        G = tiles.buffer("grad", n)  # [n, C] dL/ds
        first, _ = directions[0] if directions else (None, None)
        if first is None or first.E is None:
            G.zero_()
        T = None if saved_exp else tiles.buffer("work", n)
        pos = None if P.single else P.positives(a, b, out=tiles.buffer("positives", n, torch.bool))
        for co, v in directions:
            if co.E is not None and co.A is not None and co.sums is not None:
                coef = v(co.A / co.sums, a, b)
                torch.mul(co.E[a:b], coef, out=G) if co is first else G.addcmul_(co.E[a:b], coef)
            elif co.lse is not None and co.A is not None:
                assert S is not None and T is not None
                G.add_(torch.sub(S, v(co.lse, a, b), out=T).exp_().mul_(v(co.A, a, b)))
            if co.ln is not None and co.Nc is not None and co.Pc is not None:
                assert pos is not None and S is not None and T is not None
                G.add_(torch.sub(S, v(co.ln, a, b), out=T).exp_().masked_fill_(pos, 0.0).mul_(v(co.Nc, a, b)))
                G.add_(torch.sub(v(co.ln, a, b), S, out=T).sigmoid_().mul_(pos).mul_(v(co.Pc, a, b)))
            if co.K is not None:
                G.add_(v(co.K, a, b))
            if co.D is not None:
                G.diagonal(a + P.offset).add_(co.D[a:b])
        acc.add(G, a, b)
    return acc.finish(tiles.scale)
