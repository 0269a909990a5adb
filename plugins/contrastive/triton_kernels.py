"""Triton kernels of the fused tiled contrastive losses (imported only when a Triton path runs).

Both kernels sweep the logit matrix ``s = t * ra_i * rb_j * (a_i . b_j) + bias`` of row
features ``a [n, D]`` against column features ``b [m, D]`` (``ra``/``rb``: the inverse L2
norms, fused normalisation, or ones) in blocks of ``BM`` rows x ``BN`` columns, one program
per row block; ``a . b`` is a ``tl.dot`` over ``D`` in ``BK`` slices with fp32 accumulation
(fp16/bf16 operands on the tensor cores; fp32 operands at ``PRECISION``). The logits are
never stored: extra memory is ``O(n)`` per launch. The column direction is the same kernel
launched with ``a`` and ``b`` swapped (the matrix transposed).

- :func:`stats_kernel` (forward), per row: ``KIND=0`` (softmax) the log-sum-exp over all
  columns and, with ``NEG``, over the negatives only (online max/sum, flash-attention style;
  ``-inf`` when a row has no negative); ``KIND=1`` (sigmoid) ``sum_j softplus(-+s_ij)`` (minus
  on positives); ``KIND=3`` given each row's negatives-only log-sum-exp ``ln``, the sums over
  its positives of ``softplus(ln - s)`` and ``sigmoid(ln - s)`` and their number; ``KIND=2``
  nothing; with ``ARGMAX`` (any kind but 3; metrics) also the first column of each row's maximum
  and the sum of its positives' logits (in ``out3``).
- :func:`grad_kernel` (backward): recomputes each block, forms ``G = dL/ds`` from both sides'
  coefficients and accumulates ``out[i] += sum_j G_ij rb_j b_j`` (each program owns its rows:
  no atomics) and ``gsum[i] = sum_j G_ij``.

Positives (``POS``): 0 the matching pairs ``j = i + offset``, 1 equal group ids
``ga[i] == gb[j]``, 2 an explicit bool mask ``[n, m]`` (strides given). Nothing has a
data-dependent shape.
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
def _positives(ga, gb_ptr, mask_ptr, r0, j0, rows, cols, rmask, cmask, offset, stride_mr, stride_mc,
               BM: tl.constexpr, BN: tl.constexpr, POS: tl.constexpr):
    """``[BM, BN]`` bool: which entries of the block at ``(r0, j0)`` are positives (POS 0: ``j = i + offset``,
    1: group ids, 2: mask)."""
    if POS == 0:
        return cols[None, :] == (rows + offset)[:, None]
    elif POS == 1:
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
def stats_kernel(a_ptr, b_ptr, ra_ptr, rb_ptr, ga_ptr, gb_ptr, mask_ptr, scale_ptr, bias_ptr, in_ptr,
                 out_ptr, out2_ptr, out3_ptr, arg_ptr, n, m, D, offset, stride_a, stride_b, stride_mr, stride_mc,
                 KIND: tl.constexpr, POS: tl.constexpr, NEG: tl.constexpr, ARGMAX: tl.constexpr,
                 PRECISION: tl.constexpr, UPCAST: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """Forward statistics of rows ``pid*BM ...`` (see the module docstring); outputs fp32 ``[n]``."""
    r0 = tl.program_id(0) * BM
    rows = r0 + tl.arange(0, BM)
    rmask = rows < n
    a_blk = a_ptr + r0.to(tl.int64) * stride_a
    ra = tl.load(ra_ptr + rows, mask=rmask, other=0.0)
    ga = tl.load(ga_ptr + rows, mask=rmask, other=0) if POS == 1 else 0
    ln = tl.load(in_ptr + rows, mask=rmask, other=0.0) if KIND == 3 else 0.0
    t = tl.load(scale_ptr)
    bias = tl.load(bias_ptr)
    m_all = tl.full((BM,), float("-inf"), tl.float32)
    l_all = tl.zeros((BM,), tl.float32)  # KIND 3: sum of softplus(ln - s_p)
    m_neg = tl.full((BM,), float("-inf"), tl.float32)
    l_neg = tl.zeros((BM,), tl.float32)  # KIND 3: sum of sigmoid(ln - s_p)
    count = tl.zeros((BM,), tl.float32)
    best = tl.full((BM,), float("-inf"), tl.float32)
    best_arg = tl.zeros((BM,), tl.int64)
    for j0 in range(0, m, BN):
        cols = j0 + tl.arange(0, BN)
        cmask = cols < m
        b_blk = b_ptr + j0 * stride_b.to(tl.int64)
        s, _ = _logits(a_blk, b_blk, ra, rb_ptr, t, bias, cols, rmask, cmask, D, stride_a, stride_b,
                       BM, BN, BK, PRECISION, UPCAST)
        s = tl.where(cmask[None, :], s, float("-inf"))  # ragged last column block
        if (ARGMAX or KIND == 1) or (KIND == 3 or NEG):  # two-operand boolean ops: older Triton rejects chains
            pos = _positives(ga, gb_ptr, mask_ptr, r0, j0, rows, cols, rmask, cmask, offset, stride_mr, stride_mc,
                             BM, BN, POS) & cmask[None, :]
        if ARGMAX:  # metrics: row maximum and the positives' logit sum
            count += tl.sum(tl.where(pos, s, 0.0), 1)
            blk = tl.max(s, 1)
            blk_arg = tl.argmax(s, 1).to(tl.int64) + j0
            better = blk > best
            best = tl.where(better, blk, best)
            best_arg = tl.where(better, blk_arg, best_arg)
        if KIND == 0:
            m_all, l_all = _online_lse(m_all, l_all, s)
            if NEG:
                m_neg, l_neg = _online_lse(m_neg, l_neg, tl.where(pos, float("-inf"), s))
        if KIND == 1:  # SigLIP: softplus(-s) on positives, softplus(s) elsewhere
            l_all += tl.sum(tl.where(cmask[None, :], _softplus(tl.where(pos, -s, s)), 0.0), 1)
        if KIND == 3:  # each positive against the row's negatives (ln: their log-sum-exp)
            z = tl.where(pos, ln[:, None] - s, float("-inf"))
            l_all += tl.sum(tl.where(pos, _softplus(z), 0.0), 1)
            l_neg += tl.sum(tl.where(pos, tl.sigmoid(z), 0.0), 1)
            count += tl.sum(pos.to(tl.float32), 1)
    if KIND == 0:
        tl.store(out_ptr + rows, m_all + tl.log(l_all), mask=rmask)
        if NEG:
            tl.store(out2_ptr + rows, m_neg + tl.log(l_neg), mask=rmask)  # -inf: no negative
    if KIND == 1:
        tl.store(out_ptr + rows, l_all, mask=rmask)
    if KIND == 3:
        tl.store(out_ptr + rows, l_all, mask=rmask)
        tl.store(out2_ptr + rows, l_neg, mask=rmask)
        tl.store(out3_ptr + rows, count, mask=rmask)
    if ARGMAX:
        tl.store(arg_ptr + rows, best_arg, mask=rmask)
        tl.store(out3_ptr + rows, count, mask=rmask)


@triton.jit
def _coef(ptr, k: tl.constexpr, idx, msk, stride):
    """Row ``k`` of a side's coefficient matrix ``[7, n]`` (see :func:`grad_kernel`) at ``idx``."""
    return tl.load(ptr + k * stride + idx, mask=msk, other=0.0)


@triton.jit
def _side_terms(s, pos, ptr, idx, msk, stride, ROW: tl.constexpr, KIND: tl.constexpr, POS: tl.constexpr):
    """One side's part of ``dL/ds`` on a block, its vectors broadcast along rows (``ROW``) or columns."""
    c = _coef(ptr, 0, idx, msk, stride)
    c = c[:, None] if ROW else c[None, :]
    if KIND == 1:
        return c * (tl.sigmoid(s) - pos.to(tl.float32))
    lse = _coef(ptr, 1, idx, msk, stride)
    k = _coef(ptr, 2, idx, msk, stride)
    lse, k = (lse[:, None], k[:, None]) if ROW else (lse[None, :], k[None, :])
    g = c * tl.exp(s - lse) + k
    if POS == 0:
        d = _coef(ptr, 3, idx, msk, stride)
        return g + tl.where(pos, d[:, None] if ROW else d[None, :], 0.0)
    else:
        nc = _coef(ptr, 4, idx, msk, stride)
        ln = _coef(ptr, 5, idx, msk, stride)
        pc = _coef(ptr, 6, idx, msk, stride)
        nc, ln, pc = (nc[:, None], ln[:, None], pc[:, None]) if ROW else (nc[None, :], ln[None, :], pc[None, :])
        # inf * 0 in the branch not taken (ln = -inf: a row with no negative) is discarded by where
        return g + tl.where(pos, pc * tl.sigmoid(ln - s), nc * tl.exp(s - ln))


@triton.jit(do_not_specialize=_STRIDES)
def grad_kernel(a_ptr, b_ptr, ra_ptr, rb_ptr, ga_ptr, gb_ptr, mask_ptr, scale_ptr, bias_ptr, ca_ptr, cb_ptr,
                out_ptr, gsum_ptr, n, m, D, offset, stride_a, stride_b, stride_mr, stride_mc, stride_o,
                KIND: tl.constexpr, POS: tl.constexpr, A_TERMS: tl.constexpr, B_TERMS: tl.constexpr,
                PRECISION: tl.constexpr, UPCAST: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """Backward of rows ``pid*BM ...``: ``out [n, D]`` fp32 (zero-initialised) ``+= G rb b``, ``gsum [n]``.

    ``ca [7, n]`` / ``cb [7, m]``: each side's coefficients, rows ``c, lse, k, d, nc, ln, pc``
    (softmax: ``c e^{s-lse} + k + [pos] d`` with matching pairs, ``c e^{s-lse} + k + [pos] pc
    sigmoid(ln-s) + [neg] nc e^{s-ln}`` with groups or a mask; sigmoid: ``c (sigmoid(s) - [pos])``).
    """
    r0 = tl.program_id(0) * BM
    rows = r0 + tl.arange(0, BM)
    rmask = rows < n
    a_blk = a_ptr + r0.to(tl.int64) * stride_a
    ra = tl.load(ra_ptr + rows, mask=rmask, other=0.0)
    ga = tl.load(ga_ptr + rows, mask=rmask, other=0) if POS == 1 else 0
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
        pos = _positives(ga, gb_ptr, mask_ptr, r0, j0, rows, cols, rmask, cmask, offset, stride_mr, stride_mc, BM, BN, POS)
        g = tl.zeros((BM, BN), tl.float32)
        if A_TERMS:
            g += _side_terms(s, pos, ca_ptr, rows, rmask, n, True, KIND, POS)
        if B_TERMS:
            g += _side_terms(s, pos, cb_ptr, cols, cmask, m, False, KIND, POS)
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
