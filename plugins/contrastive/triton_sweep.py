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

__all__ = ["COEF_ROWS", "Side", "Stats", "blocks", "coefficients", "grad_sweep", "stats_sweep"]

_KIND = {"softmax": 0, "sigmoid": 1, "argmax": 2, "positives": 3}


#: Rows of a side's coefficient matrix ``[7, n]`` (see ``triton_kernels.grad_kernel``).
COEF_ROWS = ("c", "lse", "k", "d", "nc", "ln", "pc")


def coefficients(n: int, like: Tensor, **rows: Tensor | None) -> Tensor:
    """``[7, n]`` fp32 coefficient matrix from named ``[n]`` rows (missing rows are 0)."""
    out = torch.zeros(len(COEF_ROWS), n, dtype=torch.float32, device=like.device)
    for name, value in rows.items():
        if value is not None:
            out[COEF_ROWS.index(name)] = value
    return out


@dataclass
class Side:
    """One side of the ``[R, C]`` matrix: ``feats [n, D]``, ``inv_norm [n]`` fp32, positives by
    ``groups [n]`` or by the ``[R, C]`` ``mask`` (read transposed for the column side)."""

    feats: Tensor
    inv_norm: Tensor
    pos: int  # 0: matching pairs, 1: group ids, 2: mask
    offset: int  # matching pairs: row i's positive is column i + offset
    groups: Tensor | None
    mask: Tensor | None
    mask_strides: tuple[int, int]
    coef: Tensor | None = None  # [7, n] backward coefficients (``coefficients``)

    @classmethod
    def of(cls, feats: Tensor, inv_norm: Tensor, P: Pairs, is_rows: bool) -> Side:
        """The row side (``is_rows``) or the column side of ``P``'s matrix."""
        feats, inv_norm = feats.contiguous(), inv_norm.contiguous()  # the kernels index rows with stride 1
        offset = P.offset if is_rows else -P.offset
        if P.none:  # no positives (SigLIP negative_only): a matching-pair offset no column reaches
            offset = P.num_cols if is_rows else -P.num_cols
        if P.mask is not None:
            mask = P.mask.view(torch.uint8)
            strides = mask.stride() if is_rows else mask.stride()[::-1]
            return cls(feats, inv_norm, 2, offset, None, mask, (strides[0], strides[1]))
        if P.row_groups is not None:
            groups = P.row_groups if is_rows else P.col_groups
            assert groups is not None
            return cls(feats, inv_norm, 1, offset, groups.contiguous(), None, (0, 0))
        return cls(feats, inv_norm, 0, offset, None, None, (0, 0))


@dataclass
class Stats:
    """Forward statistics of the rows of one sweep (``[n]`` fp32; see ``triton_kernels.stats_kernel``):
    ``total`` (log-sum-exp, softplus sum or positive softplus sum), ``second`` (negatives-only
    log-sum-exp or positive sigmoid sum), ``count`` (positives), and with metrics ``argmax`` (else
    empty) and ``positive_sum`` (the positives' logits)."""

    total: Tensor
    second: Tensor | None
    count: Tensor | None
    argmax: Tensor
    positive_sum: Tensor | None


def blocks(dtype: torch.dtype, mask: bool = False) -> dict[str, int]:
    """Block sizes and launch options: rows ``BM`` x columns ``BN`` per block, ``BK`` features per
    ``tl.dot`` step. Half precision: 64 x 128 x 32 (wgmma tiles on Hopper); fp32: 64 x 64 x 32; both
    8 warps, 3 stages; with a positive ``mask`` (its ``[BM, BN]`` tiles take registers too) half
    precision uses ``BN`` = 64. Compiled for sm_90a, every kernel fits in 255 registers per thread
    with at most ~80 bytes of spills (BK = 64 or 4 warps spill hundreds of bytes). Under the CPU interpreter
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
    """Arguments shared by both kernels: pointers, then sizes, offset and strides."""
    dummy = a.inv_norm  # pointer of an input the variant never reads
    groups_a = a.groups if a.groups is not None else dummy
    groups_b = b.groups if b.groups is not None else dummy
    mask = a.mask if a.mask is not None else dummy
    ptrs = [a.feats, b.feats, a.inv_norm, b.inv_norm, groups_a, groups_b, mask]
    sizes = [a.feats.shape[0], b.feats.shape[0], a.feats.shape[1], a.offset, a.feats.stride(0), b.feats.stride(0), *a.mask_strides]
    return ptrs, sizes


def _launch(a: Side) -> dict:
    cfg = blocks(a.feats.dtype, a.pos == 2)
    return {"grid": (triton_cdiv(a.feats.shape[0], cfg["BM"]),), "PRECISION": _precision(a.feats.dtype),
            "UPCAST": triton_interpreted() and a.feats.dtype == torch.bfloat16, **cfg}


def stats_sweep(
    a: Side, b: Side, scale: Tensor, bias: Tensor, kind: Literal["softmax", "sigmoid", "argmax", "positives"],
    *, argmax: bool = False, neg: bool = False, lneg: Tensor | None = None,
) -> Stats:
    """Forward statistics of every row of ``a`` against the columns ``b`` (``scale``/``bias``: ``[1]``
    fp32; ``neg``: also the negatives-only log-sum-exp; ``lneg``: its value, for ``"positives"``)."""
    n, dev = a.feats.shape[0], a.feats.device
    f32 = dict(dtype=torch.float32, device=dev)
    total = torch.empty(n, **f32)
    second = torch.empty(n, **f32) if neg or kind == "positives" else None
    count = torch.empty(n, **f32) if kind == "positives" or argmax else None  # KIND 3: counts; metrics: logit sums
    arg = torch.empty(n if argmax else 0, dtype=torch.long, device=dev)
    spare = torch.empty(1, **f32)  # pointer of an unused output (never aliased to one that is written:
    # the CPU interpreter copies every argument back after the kernel)
    ptrs, sizes = _common(a, b)
    run = _launch(a)
    K.stats_kernel[run.pop("grid")](
        *ptrs, scale, bias, lneg if lneg is not None else spare, total, spare if second is None else second,
        spare if count is None else count, arg if argmax else spare, *sizes,
        KIND=_KIND[kind], POS=a.pos, NEG=neg, ARGMAX=argmax, **run,
    )
    if argmax:
        return Stats(total, second, None, arg, count)
    return Stats(total, second, count, arg, None)


def grad_sweep(a: Side, b: Side, scale: Tensor, bias: Tensor, kind: Literal["softmax", "sigmoid"]) -> tuple[Tensor, Tensor]:
    """``(sum_j G_ij rb_j b_j [n, D] fp32, sum_j G_ij [n])`` for the rows of ``a`` (``G = dL/ds`` from the
    sides' coefficient matrices)."""
    n, d = a.feats.shape
    out = torch.zeros(n, d, dtype=torch.float32, device=a.feats.device)
    gsum = torch.empty(n, dtype=torch.float32, device=a.feats.device)
    ptrs, sizes = _common(a, b)
    zero = a.inv_norm  # placeholder pointer of an absent side
    run = _launch(a)
    K.grad_kernel[run.pop("grid")](
        *ptrs, scale, bias, zero if a.coef is None else a.coef, zero if b.coef is None else b.coef, out, gsum,
        *sizes, out.stride(0), KIND=_KIND[kind], POS=a.pos, A_TERMS=a.coef is not None, B_TERMS=b.coef is not None, **run,
    )
    return out, gsum


def triton_cdiv(n: int, block: int) -> int:
    """Number of blocks of ``block`` covering ``n``."""
    return (n + block - 1) // block
