"""Launchers of the fused contrastive kernels: one sweep of the logit matrix, rows of ``a``
against columns of ``b`` (:func:`stats_sweep` forward, :func:`grad_sweep` backward).

A :class:`Side` is one side of the matrix: its features, inverse norms, how its positives
are found and, in backward, its coefficients. The column direction is a sweep with the
two sides swapped. Block sizes: :func:`blocks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from losskit.kernels import triton_interpreted
from losskit_plugins.contrastive.pairs import Pairs
from losskit_plugins.contrastive import triton_kernels as K

__all__ = ["Coef", "Side", "Stats", "blocks", "grad_sweep", "stats_sweep"]

_KIND = {"softmax": 0, "sigmoid": 1, "argmax": 2}


@dataclass
class Coef:
    """Backward coefficients of one side (``[n]`` fp32): ``c`` weighs ``e^{s - lse}`` (softmax) or
    ``sigmoid(s)``; ``n`` weighs ``e^{s - lneg}`` on negatives (grouped softmax)."""

    c: Tensor
    lse: Tensor | None = None
    n: Tensor | None = None
    lneg: Tensor | None = None


@dataclass
class Side:
    """One side of the ``[R, C]`` matrix: ``feats [n, D]``, ``inv_norm [n]`` fp32, positives by
    ``groups [n]`` or by the ``[R, C]`` ``mask`` (read transposed for the column side)."""

    feats: Tensor
    inv_norm: Tensor
    pos: int  # 0: matching pairs, 1: group ids, 2: mask
    groups: Tensor | None
    mask: Tensor | None
    mask_strides: tuple[int, int]
    coef: Coef | None = None

    @classmethod
    def of(cls, feats: Tensor, inv_norm: Tensor, P: Pairs, is_rows: bool) -> Side:
        """The row side (``is_rows``) or the column side of ``P``'s matrix."""
        feats, inv_norm = feats.contiguous(), inv_norm.contiguous()  # the kernels index rows with stride 1
        if P.mask is not None:
            mask = P.mask.view(torch.uint8)
            strides = mask.stride() if is_rows else mask.stride()[::-1]
            return cls(feats, inv_norm, 2, None, mask, (strides[0], strides[1]))
        if P.row_groups is not None:
            groups = P.row_groups if is_rows else P.col_groups
            assert groups is not None
            return cls(feats, inv_norm, 1, groups.contiguous(), None, (0, 0))
        return cls(feats, inv_norm, 0, None, None, (0, 0))


@dataclass
class Stats:
    """Forward statistics of the rows of one sweep: ``total [n]`` (log-sum-exp or softplus sum),
    ``neg [n]`` (negatives-only log-sum-exp, grouped softmax) and ``argmax [n]`` (or empty)."""

    total: Tensor
    neg: Tensor | None
    argmax: Tensor


def blocks(dtype: torch.dtype, mask: bool = False) -> dict[str, int]:
    """Block sizes and launch options: rows ``BM`` x columns ``BN`` per block, ``BK`` features per
    ``tl.dot`` step. Half precision: 64 x 128 x 32 (wgmma tiles on Hopper); fp32: 64 x 64 x 32; both
    8 warps, 3 stages; with a positive ``mask`` (its ``[BM, BN]`` tiles take registers too) half
    precision uses ``BN`` = 64. Compiled for sm_90a, every kernel fits in 255 registers per thread
    with at most 40 bytes of spills (BK = 64 or 4 warps spill hundreds of bytes). Under the CPU interpreter
    16 x 16 x 16 (small tests still cover ragged blocks). Not yet timed on a GPU."""
    if triton_interpreted():
        return {"BM": 16, "BN": 16, "BK": 16, "num_warps": 1}
    if dtype in (torch.float16, torch.bfloat16):
        return {"BM": 64, "BN": 64 if mask else 128, "BK": 32, "num_warps": 8, "num_stages": 3}
    return {"BM": 64, "BN": 64, "BK": 32, "num_warps": 8, "num_stages": 3}


def _precision(dtype: torch.dtype) -> str:
    """``tl.dot`` precision of fp32 operands, as ``torch.get_float32_matmul_precision()`` asks."""
    if dtype != torch.float32:
        return "ieee"  # ignored for half operands
    return {"highest": "ieee", "high": "tf32x3", "medium": "tf32"}[torch.get_float32_matmul_precision()]


def _common(a: Side, b: Side) -> tuple[list, list]:
    """Arguments shared by both kernels: pointers, then sizes and strides."""
    dummy = a.inv_norm
    groups_a = a.groups if a.groups is not None else dummy
    groups_b = b.groups if b.groups is not None else dummy
    mask = a.mask if a.mask is not None else dummy
    ptrs = [a.feats, b.feats, a.inv_norm, b.inv_norm, groups_a, groups_b, mask]
    sizes = [a.feats.shape[0], b.feats.shape[0], a.feats.shape[1], a.feats.stride(0), b.feats.stride(0), *a.mask_strides]
    return ptrs, sizes


def stats_sweep(a: Side, b: Side, scale: Tensor, bias: Tensor, kind: Literal["softmax", "sigmoid", "argmax"], *, argmax: bool) -> Stats:
    """Forward statistics of every row of ``a`` against the columns ``b`` (``scale``/``bias``: ``[1]`` fp32)."""
    n = a.feats.shape[0]
    dev = a.feats.device
    total = torch.empty(n, dtype=torch.float32, device=dev)
    neg = torch.empty(n if kind == "softmax" and a.pos else 0, dtype=torch.float32, device=dev)
    arg = torch.empty(n if argmax else 0, dtype=torch.long, device=dev)
    cfg = blocks(a.feats.dtype, a.pos == 2)
    ptrs, sizes = _common(a, b)
    spare = torch.empty(1, dtype=torch.float32, device=dev)  # pointer of an unused output (never aliased to one
    # that is written: the CPU interpreter copies every argument back after the kernel)
    K.stats_kernel[(triton_cdiv(n, cfg["BM"]),)](
        *ptrs, scale, bias, total, neg if neg.numel() else spare, arg if argmax else spare, *sizes,
        KIND=_KIND[kind], POS=a.pos, NEG=bool(neg.numel()), ARGMAX=argmax, PRECISION=_precision(a.feats.dtype),
        UPCAST=triton_interpreted() and a.feats.dtype == torch.bfloat16, **cfg,
    )
    return Stats(total, neg if neg.numel() else None, arg)


def grad_sweep(a: Side, b: Side, scale: Tensor, bias: Tensor, kind: Literal["softmax", "sigmoid"]) -> tuple[Tensor, Tensor]:
    """``(sum_j G_ij rb_j b_j [n, D] fp32, sum_j G_ij [n])`` for the rows of ``a`` (``G``: the dense
    part of ``dL/ds`` given by the sides' coefficients)."""
    n, d = a.feats.shape
    out = torch.zeros(n, d, dtype=torch.float32, device=a.feats.device)
    gsum = torch.empty(n, dtype=torch.float32, device=a.feats.device)
    ptrs, sizes = _common(a, b)
    zero = a.inv_norm  # placeholder pointer of an absent coefficient
    ca, cb = a.coef or Coef(zero), b.coef or Coef(zero)
    vecs = [ca.c, cb.c, ca.lse, cb.lse, ca.n, cb.n, ca.lneg, cb.lneg]
    cfg = blocks(a.feats.dtype, a.pos == 2)
    K.grad_kernel[(triton_cdiv(n, cfg["BM"]),)](
        *ptrs, scale, bias, *[zero if v is None else v.contiguous() for v in vecs], out, gsum, *sizes, out.stride(0),
        KIND=_KIND[kind], POS=a.pos, A_TERMS=a.coef is not None, B_TERMS=b.coef is not None,
        PRECISION=_precision(a.feats.dtype),
        UPCAST=triton_interpreted() and a.feats.dtype == torch.bfloat16, **cfg,
    )
    return out, gsum


def triton_cdiv(n: int, block: int) -> int:
    """Number of blocks of ``block`` covering ``n``."""
    return (n + block - 1) // block
