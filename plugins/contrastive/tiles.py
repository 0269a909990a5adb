"""Row tiles of the logit matrix with buffers reused within a call, and the gradient accumulator.

A :class:`Tiles` walks ``s = scale * x @ y.T (+ bias)`` in matmul tiles of ``chunk`` rows
(one tile: the dense path) and, inside a tile, in element-wise blocks of at most
``_BLOCK_ELEMS`` entries. Every ``[rows, C]`` temporary lives in a named buffer allocated
once per call and written with ``out=`` / in-place ops, so a call makes a fixed handful of
large allocations however many tiles it walks (per-tile temporaries made the CPU
allocator's peak RSS climb from call to call: docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["GradAccumulator", "Tiles", "softplus", "softplus_"]

_BLOCK_ELEMS = 1 << 24  # element-wise blocks of at most 16M entries (64 MiB in fp32)


def softplus(t: Tensor) -> Tensor:
    """Exact, overflow-free ``log(1 + e^t)`` (no linear threshold, unlike ``F.softplus``)."""
    return -F.logsigmoid(-t)


def softplus_(t: Tensor, scratch: Tensor) -> Tensor:
    """``max(t, 0) + log1p(e^{-|t|})`` (:func:`softplus`) in place in ``t``, using ``scratch`` (same shape) as workspace."""
    torch.abs(t, out=scratch).neg_().exp_().log1p_()  # log(1 + e^{-|t|})
    return t.clamp_min_(0).add_(scratch)


class Tiles:
    """Tiles of ``s = scale * x [R, D] @ y [C, D].T (+ bias)``; ``chunk`` rows per tile (None: one)."""

    def __init__(self, x: Tensor, y: Tensor, scale: Tensor, bias: Tensor | None, chunk: int | None) -> None:
        R, C = x.shape[0], y.shape[0]
        self.x, self.y, self.scale, self.bias = x, y, scale, bias
        self.step = max(1, R if chunk is None else min(chunk, R))
        self.bounds = [(r0, min(r0 + self.step, R)) for r0 in range(0, R, self.step)]
        self.block = max(1, min(self.step, _BLOCK_ELEMS // max(C, 1)))
        self._buffers: dict[str, Tensor] = {}

    @property
    def dense(self) -> bool:
        """One tile: the logits are computed once and kept for backward."""
        return len(self.bounds) == 1

    def buffer(self, name: str, rows: int, dtype: torch.dtype | None = None, cols: int | None = None) -> Tensor:
        """The first ``rows`` rows of the call's buffer ``name`` (allocated on first use)."""
        buf = self._buffers.get(name)
        if buf is None:
            cap = self.step if name in ("logits", "scaled") else self.block
            width = self.y.shape[0] if cols is None else cols
            buf = torch.empty(cap, width, dtype=dtype or self.x.dtype, device=self.x.device)
            self._buffers[name] = buf
        return buf[:rows]

    def logits(self, r0: int, r1: int) -> Tensor:
        """``[r1 - r0, C]`` logits of rows ``r0:r1`` (in the reused ``logits`` buffer)."""
        out = self.buffer("logits", r1 - r0)
        xs = torch.mul(self.x[r0:r1], self.scale, out=self.buffer("scaled", r1 - r0, cols=self.x.shape[1]))  # [r, D]
        if self.bias is not None:
            return torch.addmm(self.bias, xs, self.y.T, out=out)
        return torch.mm(xs, self.y.T, out=out)

    def blocks(self, saved: Tensor | None = None) -> Iterator[tuple[int, int, Tensor]]:
        """``(a, b, s[a:b])`` element-wise blocks; ``saved``: the dense logits from forward."""
        for r0, r1 in self.bounds:
            S = saved if saved is not None else self.logits(r0, r1)
            for a, b in self.ranges(r0, r1):
                yield a, b, S[a - r0 : b - r0]

    def ranges(self, r0: int, r1: int) -> Iterator[tuple[int, int]]:
        """``(a, b)`` element-wise blocks of the rows ``r0:r1``."""
        for a in range(r0, r1, self.block):
            yield a, min(a + self.block, r1)


class GradAccumulator:
    """``Ux = G @ y``, ``Uy = G.T @ x`` and ``sum(G)`` over the blocks ``G = dL/ds`` of a call."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y
        self.Ux, self.Uy = torch.empty_like(x), torch.zeros_like(y)
        self.gbias = x.new_zeros(())

    def add(self, G: Tensor, a: int, b: int) -> None:
        """Add the block ``G [b - a, C]`` of rows ``a:b``."""
        torch.mm(G, self.y, out=self.Ux[a:b])
        self.Uy.addmm_(G.T, self.x[a:b])
        self.gbias = self.gbias + G.sum()

    def finish(self, scale: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Gradients w.r.t. ``x``, ``y``, the scale and the bias."""
        g_scale = torch.dot(self.x.reshape(-1), self.Ux.reshape(-1))  # sum_ij dL/ds_ij * s_ij / scale
        return self.Ux.mul_(scale), self.Uy.mul_(scale), g_scale, self.gbias
