"""Exact dense / tiled pairwise contrastive losses with a hand-written backward.

One ``torch.autograd.Function`` computes, for row features ``x [R, D]``, column
features ``y [C, D]``, a logit scale ``t`` and bias ``b``, the logits
``s = t * x @ y.T + b`` row block by row block (``chunk`` rows at a time; one block =
the dense path) and reduces them to per-row / per-column statistics. Two kernels:

``softmax`` (``clip``, ``infonce``): per row ``i`` with positives ``P_i`` and negatives
``N_i`` (see :mod:`losskit_plugins.contrastive.pairs`) and label smoothing ``eps``::

    L_i = (1 - eps) * mean_{p in P_i} -log( e^{s_ip} / (e^{s_ip} + sum_{n in N_i} e^{s_in}) )
          + eps * ( logsumexp_j s_ij - mean_j s_ij )

i.e. each positive is scored against the negatives only: positives are never
each other's negatives. With one positive per row this is exactly
``F.cross_entropy(s, target, label_smoothing=eps)``. A row without positives has
loss 0; a row without negatives scores 0 per positive. The same per column
(``text -> image``) when ``cols`` is requested.

``sigmoid`` (``siglip``, Zhai et al. 2023): ``L_i = sum_j softplus(s_ij) - sum_{p in P_i} s_ip``
(= ``-sum_j log sigmoid(y_ij s_ij)`` with ``y = +1`` on positives, ``-1`` elsewhere).

Cost (softmax, dense, ``R = C = B``): forward one ``B x B x D`` matmul, one ``exp``
of the logit matrix shifted by one scalar and shared by both directions' log-sum-exp
and by backward; backward two matmuls. Nothing ``B x B`` beyond that one matrix is
built: positives are gathered, the label-smoothing and sparse positive terms of the
gradient are rank-1 / index-add corrections. Tiled (``chunk < R``): the same per block,
block logits recomputed in backward (one extra matmul), memory ``O(chunk * C)``.

The shared scalar shift of ``exp`` (the block maximum) would underflow a row whose
maximum is ~70 below it (only possible at extreme scales); that case is detected and
the computation is redone in float64 (and, in float64, clamped).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from losskit_plugins.contrastive.pairs import Pairs

__all__ = ["EngineOptions", "EngineResult", "pairwise_loss", "softplus"]

_TINY = {torch.float32: 1e-30, torch.float64: 1e-290}


def softplus(t: Tensor) -> Tensor:
    """Exact, overflow-free ``log(1 + e^t)`` (no linear threshold, unlike ``F.softplus``)."""
    return -F.logsigmoid(-t)


@dataclass(frozen=True)
class EngineOptions:
    """What :func:`pairwise_loss` computes.

    Attributes:
        kind: ``"softmax"`` or ``"sigmoid"``.
        pairs: positives of the ``[R, C]`` matrix.
        rows: compute the per-row loss; cols: the per-column loss (softmax only).
        label_smoothing: softmax ``eps``.
        chunk: rows per block (None: one block, logits kept for backward).
        has_bias: add ``bias`` to the logits (set by :func:`pairwise_loss`).
        normalize: L2-normalise the rows of ``x`` and ``y`` first, fused: backward turns the
            gradient w.r.t. the unit vectors into the raw features' gradient in place.
        metrics: also return arg-max indices (for top-1 accuracy).
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


@dataclass
class EngineResult:
    """Per-row ``[R]`` / per-column ``[C]`` losses (zeros where not requested), arg-max
    of each row / column (``[R]``/``[C]`` long, empty without metrics) and the positive
    logits ``[P]`` (detached)."""

    row_loss: Tensor
    col_loss: Tensor
    row_argmax: Tensor
    col_argmax: Tensor
    positive_logits: Tensor


class _Underflow(Exception):
    pass


def _blocks(n: int, chunk: int | None) -> list[int]:
    step = n if chunk is None else max(1, min(chunk, n))
    return list(range(0, n, step))


def _logits(x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, has_bias: bool) -> Tensor:
    """``[r, C]`` block ``scale * x @ y.T (+ bias)`` (the scale applied to the ``[r, D]`` rows)."""
    xs = x * scale  # [r, D]
    return torch.addmm(bias, xs, y.T) if has_bias else xs @ y.T


def _check_sums(sums: list[Tensor], dtype: torch.dtype) -> None:
    tiny = _TINY.get(dtype, 1e-30)
    if dtype == torch.float64:
        for s in sums:
            s.clamp_min_(tiny)
        return
    if any(bool((s < tiny).any()) for s in sums if s.numel()):
        raise _Underflow


class _State:
    """Everything forward computes that backward needs (plain attributes on ctx)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


class _Scan:
    """Row blocks of ``s = scale * x @ y.T + bias`` in forward: yields ``(k, r0, r1, S, row_max)``
    per block (``S [r, C]``, which the caller may overwrite) after gathering the positives'
    logits into ``s_pos [P]`` and, with metrics, the row / column arg-max."""

    def __init__(self, x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, o: EngineOptions) -> None:
        R, C = x.shape[0], y.shape[0]
        self.x, self.y, self.scale, self.bias, self.o = x, y, scale, bias, o
        self.starts = _blocks(R, o.chunk)
        self.ends = self.starts[1:] + [R]
        self.bounds = o.pairs.block_bounds(self.starts)
        self.s_pos = x.new_empty(o.pairs.rows.numel())  # [P]
        self.row_arg = torch.empty(R if o.metrics else 0, dtype=torch.long, device=x.device)
        self.col_arg = torch.zeros(C if o.metrics else 0, dtype=torch.long, device=x.device)
        self.col_best = x.new_full((C if o.metrics else 0,), float("-inf"))

    def __iter__(self):
        P, o = self.o.pairs, self.o
        for k, (r0, r1) in enumerate(zip(self.starts, self.ends)):
            p0, p1 = self.bounds[k], self.bounds[k + 1]
            S = _logits(self.x[r0:r1], self.y, self.scale, self.bias, o.has_bias)  # [r, C]
            self.s_pos[p0:p1] = S[P.rows[p0:p1] - r0, P.cols[p0:p1]]
            row_max = None
            if o.metrics:
                row_max, self.row_arg[r0:r1] = S.max(1)
                cmax, carg = S.max(0)
                better = cmax > self.col_best
                self.col_best = torch.where(better, cmax, self.col_best)
                self.col_arg = torch.where(better, carg + r0, self.col_arg)
            yield k, r0, r1, S, row_max

    def outputs(self, row_loss: Tensor, col_loss: Tensor) -> tuple:
        return row_loss, col_loss, self.row_arg, self.col_arg, self.s_pos


# ---------------------------------------------------------------- softmax kernel
def _softmax_forward(x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, o: EngineOptions) -> tuple[_State, tuple]:
    P, eps = o.pairs, o.label_smoothing
    R, C = x.shape[0], y.shape[0]
    grouped = not P.single
    scan = _Scan(x, y, scale, bias, o)
    r, rn, row_shift = x.new_zeros(R), x.new_zeros(R), x.new_empty(R)
    c, cn = x.new_zeros(C), x.new_zeros(C)
    M = x.new_tensor(float("-inf"))
    shifts: list[Tensor] = []
    saved: tuple[Tensor, Tensor | None] | None = None
    for _, r0, r1, S, rmax in scan:
        rmax = S.amax(1) if rmax is None else rmax
        mb = rmax.max()
        E = S.sub_(mb).exp_()  # [r, C] = exp(s - mb), the only exp of the logits
        shifts.append(mb)
        row_shift[r0:r1] = mb
        r[r0:r1] = E.sum(1)
        neg = ~P.positives(r0, r1) if grouped else None  # [r, C] bool
        En = E * neg if neg is not None else None
        if En is not None:
            rn[r0:r1] = En.sum(1)
        if o.cols:
            Mn = torch.maximum(M, mb)
            fo, fb = torch.exp(M - Mn), torch.exp(mb - Mn)
            c = c * fo + E.sum(0) * fb
            if En is not None:
                cn = cn * fo + En.sum(0) * fb
            M = Mn
        if len(scan.starts) == 1:
            saved = (E, neg)
    s_pos = scan.s_pos

    row_count = P.row_count(x.dtype)
    col_count = P.col_count(x.dtype) if o.cols else x.new_zeros(C)
    e_pos_r = torch.exp(s_pos - row_shift[P.rows])  # [P] positives' exp, row shift
    e_pos_c = torch.exp(s_pos - M) if o.cols else None
    checks = [r] + ([c] if o.cols else [])
    if grouped:
        checks.append(rn[P.rows] + e_pos_r)
        if o.cols:
            checks.append(cn[P.cols] + e_pos_c)
    _check_sums(checks, x.dtype)

    def direction(total: Tensor, neg_total: Tensor, shift: Tensor, idx: Tensor, count: Tensor, other_sum: Tensor, n_other: int) -> Tensor:
        lse = torch.log(total) + shift
        mean_s = other_sum / n_other  # [n] mean logit of the row (label smoothing)
        if not grouped:
            return lse - (1 - eps) * s_pos - eps * mean_s
        ln = torch.log(neg_total) + shift  # -inf where a row has no negative
        per_pos = softplus(ln[idx] - s_pos)  # [P]
        mean_pos = torch.zeros_like(total).index_add_(0, idx, per_pos) / count.clamp_min(1)
        return torch.where(count > 0, (1 - eps) * mean_pos + eps * (lse - mean_s), torch.zeros_like(total))

    row_loss = x.new_zeros(R)
    col_loss = x.new_zeros(C)
    if o.rows:
        row_sum = (x @ y.sum(0)) * scale + (C * bias if o.has_bias else 0)  # [R] sum_j s_ij
        row_loss = direction(r, rn, row_shift, P.rows, row_count, row_sum, C)
    if o.cols:
        col_sum = (y @ x.sum(0)) * scale + (R * bias if o.has_bias else 0)  # [C] sum_i s_ij
        col_loss = direction(c, cn, M, P.cols, col_count, col_sum, R)
    st = _State(
        shifts=shifts, M=M, r=r, rn=rn, c=c, cn=cn, e_pos_r=e_pos_r,
        e_pos_c=e_pos_c, row_count=row_count, col_count=col_count, saved=saved, starts=scan.starts, ends=scan.ends,
    )
    return st, scan.outputs(row_loss, col_loss)


def _softmax_backward(st: _State, x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, o: EngineOptions, g_r: Tensor, g_c: Tensor):
    P, eps = o.pairs, o.label_smoothing
    R, C = x.shape[0], y.shape[0]
    grouped = not P.single
    g_r = g_r if o.rows else torch.zeros_like(g_r)
    g_c = g_c if o.cols else torch.zeros_like(g_c)
    if grouped:
        g_r = torch.where(st.row_count > 0, g_r, 0)
        g_c = torch.where(st.col_count > 0, g_c, 0)
    # dL/ds = E * (a_r[i] + a_c[j] + neg_ij * (b_r[i] + b_c[j])) + sparse v on positives - k_r[i] - k_c[j]
    if not grouped:
        a_r, a_c = g_r / st.r, g_c / st.c
        b_r = b_c = None
        v = -(1 - eps) * (g_r[P.rows] + (g_c[P.cols] if o.cols else 0))
    else:
        a_r, a_c = eps * g_r / st.r, eps * g_c / st.c
        w_r = (1 - eps) * g_r / st.row_count.clamp_min(1)
        den_r = st.rn[P.rows] + st.e_pos_r  # [P]
        b_r = w_r * torch.zeros_like(g_r).index_add_(0, P.rows, 1 / den_r)
        v = -w_r[P.rows] * st.rn[P.rows] / den_r
        if o.cols:
            w_c = (1 - eps) * g_c / st.col_count.clamp_min(1)
            den_c = st.cn[P.cols] + st.e_pos_c
            b_c = w_c * torch.zeros_like(g_c).index_add_(0, P.cols, 1 / den_c)
            v = v - w_c[P.cols] * st.cn[P.cols] / den_c
        else:
            b_c = torch.zeros_like(g_c)
    Ux, Uy = torch.empty_like(x), torch.zeros_like(y)
    for k, (r0, r1) in enumerate(zip(st.starts, st.ends)):
        if st.saved is not None:
            E, neg = st.saved
        else:
            E = _logits(x[r0:r1], y, scale, bias, o.has_bias).sub_(st.shifts[k]).exp_()
            neg = ~P.positives(r0, r1) if grouped else None
        f = torch.exp(st.shifts[k] - st.M) if o.cols else None  # column normaliser of this block's shift
        coef = a_r[r0:r1, None] + (a_c * f)[None, :] if o.cols else a_r[r0:r1, None]  # [r, C] or [r, 1]
        if grouped:
            b = b_r[r0:r1, None] + (b_c * f)[None, :] if o.cols else b_r[r0:r1, None]
            coef = coef + neg * b  # [r, C]
        G = coef.mul_(E) if coef.shape == E.shape else E * coef  # [r, C] dL/ds (coef is fresh)
        torch.mm(G, y, out=Ux[r0:r1])
        Uy.addmm_(G.T, x[r0:r1])
    gbias = (a_r * st.r).sum() + ((a_c * st.c).sum() if o.cols else 0)
    if grouped:
        gbias = gbias + (b_r * st.rn).sum() + ((b_c * st.cn).sum() if o.cols else 0)
    k_r = eps * g_r / C if eps > 0 else None
    k_c = eps * g_c / R if eps > 0 and o.cols else None
    return _finish(x, y, scale, P, Ux, Uy, v, k_r, k_c, gbias)


# ---------------------------------------------------------------- sigmoid kernel
def _sigmoid_forward(x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, o: EngineOptions) -> tuple[_State, tuple]:
    P = o.pairs
    R, C = x.shape[0], y.shape[0]
    scan = _Scan(x, y, scale, bias, o)
    row_loss = x.new_zeros(R)
    saved = None
    for _, r0, r1, S, _ in scan:
        row_loss[r0:r1] = softplus(S).sum(1)
        if len(scan.starts) == 1:
            saved = S
    row_loss = row_loss - torch.zeros_like(row_loss).index_add_(0, P.rows, scan.s_pos)
    st = _State(saved=saved, starts=scan.starts, ends=scan.ends)
    return st, scan.outputs(row_loss, x.new_zeros(C))


def _sigmoid_backward(st: _State, x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, o: EngineOptions, g_r: Tensor, g_c: Tensor):
    R = x.shape[0]
    Ux, Uy = torch.empty_like(x), torch.zeros_like(y)
    gbias = x.new_zeros(())
    for r0, r1 in zip(st.starts, st.ends):
        S = st.saved if st.saved is not None else _logits(x[r0:r1], y, scale, bias, o.has_bias)
        G = torch.sigmoid(S).mul_(g_r[r0:r1, None])  # [r, C] dL/ds without the positives' -1
        gbias = gbias + G.sum()
        torch.mm(G, y, out=Ux[r0:r1])
        Uy.addmm_(G.T, x[r0:r1])
    v = -g_r[o.pairs.rows]
    return _finish(x, y, scale, o.pairs, Ux, Uy, v, None, None, gbias)


def _finish(x, y, scale, P: Pairs, Ux, Uy, v, k_r, k_c, gbias):
    """Add the sparse positive terms ``v`` and the constant (label-smoothing) terms
    ``-k_r[i] - k_c[j]`` of ``dL/ds`` to ``Ux = dL/ds @ y``, ``Uy = dL/ds.T @ x``; return the
    gradients w.r.t. ``x``, ``y``, the scale and the bias."""
    if P.single:  # pairs (i, i + offset): no [P, D] gathers
        Ux.addcmul_(v[:, None], y[P.offset : P.offset + P.num_rows])
        Uy[P.offset : P.offset + P.num_rows].addcmul_(v[:, None], x)
    else:
        Ux.index_add_(0, P.rows, v[:, None] * y[P.cols])
        Uy.index_add_(0, P.cols, v[:, None] * x[P.rows])
    gbias = gbias + v.sum()
    if k_r is not None:
        Ux -= k_r[:, None] * y.sum(0)[None, :]
        Uy -= (k_r @ x)[None, :]
        gbias = gbias - y.shape[0] * k_r.sum()
    if k_c is not None:
        Ux -= (k_c @ y)[None, :]
        Uy -= k_c[:, None] * x.sum(0)[None, :]
        gbias = gbias - x.shape[0] * k_c.sum()
    g_scale = torch.dot(x.reshape(-1), Ux.reshape(-1))  # sum_ij dL/ds_ij * s_ij / scale
    return Ux.mul_(scale), Uy.mul_(scale), g_scale, gbias


_KERNELS = {
    "softmax": (_softmax_forward, _softmax_backward),
    "sigmoid": (_sigmoid_forward, _sigmoid_backward),
}


_EPS = 1e-12  # F.normalize's eps


def _unit(t: Tensor) -> tuple[Tensor, Tensor]:
    """``(t / max(|t_i|, eps), |t_i|)`` row-wise, like ``F.normalize``: ``[N, D]``, ``[N]``."""
    norm = torch.linalg.vector_norm(t, dim=1)
    return t / norm.clamp_min(_EPS)[:, None], norm


def _unit_backward(u: Tensor, norm: Tensor, g: Tensor) -> Tensor:
    """Gradient w.r.t. ``t`` from the gradient ``g`` w.r.t. ``u = t / |t|``, in place in ``g``:
    ``(g - u (u . g)) / |t|`` (no projection where ``|t| < eps``, as ``F.normalize``)."""
    dot = torch.bmm(u.unsqueeze(1), g.unsqueeze(2)).view(-1)  # [N] row-wise u . g without an [N, D] temporary
    dot = torch.where(norm > _EPS, dot, torch.zeros_like(dot))
    return g.addcmul_(u, dot[:, None], value=-1.0).div_(norm.clamp_min(_EPS)[:, None])


class _PairwiseFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, o: EngineOptions):  # type: ignore[override]
        nx = ny = None
        if o.normalize:
            (x, nx), (y, ny) = _unit(x), _unit(y)
        forward, _ = _KERNELS[o.kind]
        st, out = forward(x, y, scale, bias, o)
        ctx.st, ctx.o, ctx.norms = st, o, (nx, ny)
        ctx.save_for_backward(x, y, scale, bias)
        ctx.mark_non_differentiable(out[2], out[3], out[4])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g_r: Tensor, g_c: Tensor, *_: Any):  # type: ignore[override]
        x, y, scale, bias = ctx.saved_tensors
        _, backward = _KERNELS[ctx.o.kind]
        gx, gy, gs, gb = backward(ctx.st, x, y, scale, bias, ctx.o, g_r, g_c)
        if ctx.o.normalize:
            nx, ny = ctx.norms
            gx, gy = _unit_backward(x, nx, gx), _unit_backward(y, ny, gy)
        return gx, gy, gs.reshape(scale.shape), (gb.reshape(bias.shape) if ctx.o.has_bias else None), None


def pairwise_loss(x: Tensor, y: Tensor, scale: Tensor, bias: Tensor | None, o: EngineOptions) -> EngineResult:
    """Run the engine on ``x [R, D]``, ``y [C, D]`` (same floating dtype), 0-d ``scale``/``bias``.

    Differentiable w.r.t. ``x``, ``y``, ``scale`` and ``bias``.
    """
    b = bias if bias is not None else x.new_zeros(())
    o = dataclasses.replace(o, has_bias=bias is not None)
    if o.cols and o.pairs.single and (o.pairs.offset != 0 or x.shape[0] != y.shape[0]):
        raise ValueError("column losses of the matching-pair layout need a square matrix with offset 0")
    try:
        out = _PairwiseFunction.apply(x, y, scale, b, o)
    except _Underflow:
        # exp(s - block max) underflowed for a whole row/column: redo in float64
        out = _PairwiseFunction.apply(x.double(), y.double(), scale.double(), b.double(), o)
        out = tuple(t.to(x.dtype) if t.is_floating_point() else t for t in out)
    return EngineResult(*out)
