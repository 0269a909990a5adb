"""Triton kernels of the fused tiled contrastive losses (imported only when a Triton path runs).

Both kernels sweep the logit matrix ``s = t * ra_i * rb_j * (a_i . b_j) + bias`` of row
features ``a [n, D]`` against column features ``b [m, D]`` (``ra``/``rb``: the inverse L2
norms, fused normalisation, or ones) in blocks of ``BM`` rows x ``BN`` columns, one program
per row block; ``a . b`` is a ``tl.dot`` over ``D`` in ``BK`` slices with fp32 accumulation
(fp16/bf16 operands on the tensor cores; fp32 operands at ``PRECISION``). The logits are
never stored: extra memory is ``O(n)`` per launch. The column direction is the same kernel
launched with ``a`` and ``b`` swapped (the matrix transposed).

- :func:`stats_kernel` (forward): per row, ``KIND=0`` (softmax) the log-sum-exp over all
  columns and, with ``NEG``, over the negatives only (online max/sum, flash-attention
  style; ``-inf`` when a row has no negative); ``KIND=1`` (sigmoid) ``sum_j softplus(s_ij)``;
  ``KIND=2`` nothing but, with ``ARGMAX``, the first column of each row's maximum.
- :func:`grad_kernel` (backward): recomputes each block, forms the dense part of
  ``G = dL/ds`` (softmax: ``ca_i e^{s-la_i} + cb_j e^{s-lb_j} + neg_ij (na_i e^{s-ma_i} + nb_j e^{s-mb_j})``;
  sigmoid: ``(ca_i + cb_j) sigmoid(s)``) and accumulates ``out[i] += sum_j G_ij rb_j b_j``
  (each program owns its rows: no atomics) and ``gsum[i] = sum_j G_ij``. The sparse
  positive and label-smoothing terms are added by the caller in ``O((n + m) D)``.

Positives (``POS``): 0 none needed (matching pairs: the dense terms cover every column),
1 equal group ids ``ga[i] == gb[j]``, 2 an explicit bool mask ``[n, m]`` (strides given).
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["grad_kernel", "stats_kernel"]


@triton.jit
def _operand(t, UPCAST: tl.constexpr):
    """A ``tl.dot`` operand; ``UPCAST``: as fp32 (the CPU interpreter multiplies bf16 bit patterns as
    integers; bf16 products are exact in fp32, so this is what the tensor cores compute)."""
    if UPCAST:
        return t.to(tl.float32)
    else:
        return t


@triton.jit
def _dot_block(a_blk, b_blk, rmask, cmask, D, stride_a, stride_b,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """``[BM, BN]`` fp32 block ``a @ b.T`` of the rows at ``a_blk`` and ``b_blk`` (pointers to the blocks'
    first rows: offsets inside a block are int32; masked rows/cols/features read as 0)."""
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    lr, lc = tl.arange(0, BM), tl.arange(0, BN)
    for k0 in range(0, D, BK):
        ks = k0 + tl.arange(0, BK)
        kmask = ks < D
        at = tl.load(a_blk + lr[:, None] * stride_a + ks[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
        bt = tl.load(b_blk + lc[:, None] * stride_b + ks[None, :], mask=cmask[:, None] & kmask[None, :], other=0.0)
        acc = tl.dot(_operand(at, UPCAST), tl.trans(_operand(bt, UPCAST)), acc, input_precision=PRECISION)
    return acc


@triton.jit
def _logits(a_blk, b_blk, ra, rb_ptr, t, bias, cols, rmask, cmask, D, stride_a, stride_b,
            BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """``[BM, BN]`` logits of one block and the columns' inverse norms ``[BN]``."""
    dot = _dot_block(a_blk, b_blk, rmask, cmask, D, stride_a, stride_b, BM, BN, BK, PRECISION, UPCAST)
    rb = tl.load(rb_ptr + cols, mask=cmask, other=0.0)
    return dot * ((t * ra)[:, None] * rb[None, :]) + bias, rb


@triton.jit
def _positives(ga, gb_ptr, mask_ptr, r0, j0, cols, rmask, cmask, stride_mr, stride_mc,
               BM: tl.constexpr, BN: tl.constexpr, POS: tl.constexpr):
    """``[BM, BN]`` bool: which entries of the block at ``(r0, j0)`` are positives (POS 1: group ids, 2: mask)."""
    if POS == 1:
        gb = tl.load(gb_ptr + cols, mask=cmask, other=0)
        return ga[:, None] == gb[None, :]
    else:
        blk = mask_ptr + r0 * stride_mr.to(tl.int64) + j0 * stride_mc.to(tl.int64)  # the mask has R * C entries
        lr, lc = tl.arange(0, BM), tl.arange(0, BN)
        m = tl.load(blk + lr[:, None] * stride_mr + lc[None, :] * stride_mc, mask=rmask[:, None] & cmask[None, :], other=0)
        return m != 0


@triton.jit
def _online_lse(m, l, s):
    """Merge block logits ``s [BM, BN]`` (``-inf`` = excluded) into running max ``m`` and sum ``l``."""
    m_new = tl.maximum(m, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing yet: no inf - inf
    l = l * tl.exp(m - m_safe) + tl.sum(tl.exp(s - m_safe[:, None]), 1)
    return m_new, l


@triton.jit
def _softplus(s):
    """Exact ``log(1 + e^s)``: ``max(s, 0) + log1p(e^{-|s|})`` with log1p by Goldberg's correction."""
    z = tl.exp(-tl.abs(s))
    u = 1.0 + z
    exact = u == 1.0
    log1p = tl.where(exact, z, tl.log(u) * (z / tl.where(exact, 1.0, u - 1.0)))
    return tl.maximum(s, 0.0) + log1p


_STRIDES = ["stride_a", "stride_b", "stride_mr", "stride_mc", "stride_o"]  # never constexpr 1: they are cast to int64


@triton.jit(do_not_specialize=_STRIDES[:4])
def stats_kernel(a_ptr, b_ptr, ra_ptr, rb_ptr, ga_ptr, gb_ptr, mask_ptr, scale_ptr, bias_ptr,
                 out_ptr, neg_ptr, arg_ptr, n, m, D, stride_a, stride_b, stride_mr, stride_mc,
                 KIND: tl.constexpr, POS: tl.constexpr, NEG: tl.constexpr, ARGMAX: tl.constexpr,
                 PRECISION: tl.constexpr, UPCAST: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """Forward statistics of rows ``pid*BM ...`` (see the module docstring); ``out``/``neg`` fp32 ``[n]``."""
    r0 = tl.program_id(0) * BM
    rows = r0 + tl.arange(0, BM)
    rmask = rows < n
    a_blk = a_ptr + r0.to(tl.int64) * stride_a
    ra = tl.load(ra_ptr + rows, mask=rmask, other=0.0)
    ga = tl.load(ga_ptr + rows, mask=rmask, other=0) if POS == 1 else 0
    t = tl.load(scale_ptr)
    bias = tl.load(bias_ptr)
    m_all = tl.full((BM,), float("-inf"), tl.float32)
    l_all = tl.zeros((BM,), tl.float32)
    m_neg = tl.full((BM,), float("-inf"), tl.float32)
    l_neg = tl.zeros((BM,), tl.float32)
    best = tl.full((BM,), float("-inf"), tl.float32)
    best_arg = tl.zeros((BM,), tl.int64)
    for j0 in range(0, m, BN):
        cols = j0 + tl.arange(0, BN)
        cmask = cols < m
        b_blk = b_ptr + j0 * stride_b.to(tl.int64)
        s, _ = _logits(a_blk, b_blk, ra, rb_ptr, t, bias, cols, rmask, cmask, D, stride_a, stride_b,
                       BM, BN, BK, PRECISION, UPCAST)
        s = tl.where(cmask[None, :], s, float("-inf"))  # ragged last column block
        if ARGMAX:
            blk = tl.max(s, 1)
            blk_arg = tl.argmax(s, 1).to(tl.int64) + j0
            better = blk > best
            best = tl.where(better, blk, best)
            best_arg = tl.where(better, blk_arg, best_arg)
        if KIND == 0:
            m_all, l_all = _online_lse(m_all, l_all, s)
            if NEG:
                pos = _positives(ga, gb_ptr, mask_ptr, r0, j0, cols, rmask, cmask, stride_mr, stride_mc, BM, BN, POS)
                m_neg, l_neg = _online_lse(m_neg, l_neg, tl.where(pos, float("-inf"), s))
        if KIND == 1:
            l_all += tl.sum(tl.where(cmask[None, :], _softplus(s), 0.0), 1)
    if KIND == 0:
        tl.store(out_ptr + rows, m_all + tl.log(l_all), mask=rmask)
        if NEG:
            tl.store(neg_ptr + rows, m_neg + tl.log(l_neg), mask=rmask)  # -inf: no negative
    if KIND == 1:
        tl.store(out_ptr + rows, l_all, mask=rmask)
    if ARGMAX:
        tl.store(arg_ptr + rows, best_arg, mask=rmask)


@triton.jit
def _grad_block(s, ca, cb_ptr, la, lb_ptr, na, nb_ptr, ma, mb_ptr, pos, cols, cmask,
                KIND: tl.constexpr, POS: tl.constexpr, A_TERMS: tl.constexpr, B_TERMS: tl.constexpr):
    """Dense part of ``dL/ds`` on one block (see the module docstring); ``[BM, BN]`` fp32."""
    if KIND == 0:
        g = tl.zeros(s.shape, tl.float32)
        if A_TERMS:
            g += ca[:, None] * tl.exp(s - la[:, None])
        if B_TERMS:
            cb = tl.load(cb_ptr + cols, mask=cmask, other=0.0)
            lb = tl.load(lb_ptr + cols, mask=cmask, other=0.0)
            g += cb[None, :] * tl.exp(s - lb[None, :])
        if POS != 0:  # grouped: negatives-only terms (their exponent <= 0 on negatives)
            gn = tl.zeros(s.shape, tl.float32)
            if A_TERMS:
                gn += na[:, None] * tl.exp(s - ma[:, None])
            if B_TERMS:
                nb = tl.load(nb_ptr + cols, mask=cmask, other=0.0)
                mb = tl.load(mb_ptr + cols, mask=cmask, other=0.0)
                gn += nb[None, :] * tl.exp(s - mb[None, :])
            g += tl.where(pos, 0.0, gn)
        return g
    else:
        c = tl.zeros(s.shape, tl.float32)
        if A_TERMS:
            c += ca[:, None]
        if B_TERMS:
            c += tl.load(cb_ptr + cols, mask=cmask, other=0.0)[None, :]
        return c * tl.sigmoid(s)


@triton.jit(do_not_specialize=_STRIDES)
def grad_kernel(a_ptr, b_ptr, ra_ptr, rb_ptr, ga_ptr, gb_ptr, mask_ptr, scale_ptr, bias_ptr,
                ca_ptr, cb_ptr, la_ptr, lb_ptr, na_ptr, nb_ptr, ma_ptr, mb_ptr, out_ptr, gsum_ptr,
                n, m, D, stride_a, stride_b, stride_mr, stride_mc, stride_o,
                KIND: tl.constexpr, POS: tl.constexpr, A_TERMS: tl.constexpr, B_TERMS: tl.constexpr,
                PRECISION: tl.constexpr, UPCAST: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """Backward of rows ``pid*BM ...``: ``out [n, D]`` fp32 (zero-initialised) ``+= G rb b``, ``gsum [n]``."""
    r0 = tl.program_id(0) * BM
    rows = r0 + tl.arange(0, BM)
    rmask = rows < n
    a_blk = a_ptr + r0.to(tl.int64) * stride_a
    ra = tl.load(ra_ptr + rows, mask=rmask, other=0.0)
    ga = tl.load(ga_ptr + rows, mask=rmask, other=0) if POS == 1 else 0
    ca = tl.load(ca_ptr + rows, mask=rmask, other=0.0) if A_TERMS else 0.0
    la = tl.load(la_ptr + rows, mask=rmask, other=0.0) if A_TERMS and KIND == 0 else 0.0
    na = tl.load(na_ptr + rows, mask=rmask, other=0.0) if A_TERMS and POS != 0 and KIND == 0 else 0.0
    ma = tl.load(ma_ptr + rows, mask=rmask, other=0.0) if A_TERMS and POS != 0 and KIND == 0 else 0.0
    t = tl.load(scale_ptr)
    bias = tl.load(bias_ptr)
    gsum = tl.zeros((BM,), tl.float32)
    o_blk = out_ptr + r0.to(tl.int64) * stride_o
    lr, lc = tl.arange(0, BM), tl.arange(0, BN)
    for j0 in range(0, m, BN):
        cols = j0 + tl.arange(0, BN)
        cmask = cols < m
        b_blk = b_ptr + j0 * stride_b.to(tl.int64)
        s, rb = _logits(a_blk, b_blk, ra, rb_ptr, t, bias, cols, rmask, cmask, D, stride_a, stride_b,
                        BM, BN, BK, PRECISION, UPCAST)
        pos = _positives(ga, gb_ptr, mask_ptr, r0, j0, cols, rmask, cmask, stride_mr, stride_mc, BM, BN, POS) if POS != 0 and KIND == 0 else 0
        g = _grad_block(s, ca, cb_ptr, la, lb_ptr, na, nb_ptr, ma, mb_ptr, pos, cols, cmask, KIND, POS, A_TERMS, B_TERMS)
        g = tl.where(rmask[:, None] & cmask[None, :], g, 0.0)  # also drops inf/nan of padded entries
        gsum += tl.sum(g, 1)
        gw = (g * rb[None, :]).to(b_ptr.dtype.element_ty)  # [BM, BN] operand of the gradient matmul
        for k0 in range(0, D, BK):
            ks = k0 + tl.arange(0, BK)
            kmask = ks < D
            bt = tl.load(b_blk + lc[:, None] * stride_b + ks[None, :], mask=cmask[:, None] & kmask[None, :], other=0.0)
            optr = o_blk + lr[:, None] * stride_o + ks[None, :]
            omask = rmask[:, None] & kmask[None, :]
            acc = tl.load(optr, mask=omask, other=0.0)
            acc = tl.dot(_operand(gw, UPCAST), _operand(bt, UPCAST), acc, input_precision=PRECISION)
            tl.store(optr, acc, mask=omask)
    tl.store(gsum_ptr + rows, gsum, mask=rmask)
