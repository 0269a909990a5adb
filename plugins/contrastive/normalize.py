"""Scale-safe row-wise L2 normalisation fused into the engine, and its backward.

``F.normalize`` squares the entries: fp32 rows with norms above ~1.8e19 overflow to
``inf`` and become zero vectors (the loss then collapses to ``log B`` with zero gradient).
Here each row is first divided by its largest magnitude, so the sum of squares lies in
``[1, D]`` whatever the scale; the result equals ``t / max(|t|, eps)`` (``F.normalize``'s
``eps = 1e-12``) wherever that is finite.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["EPS", "normalized", "unit", "unit_backward"]

EPS = 1e-12  # F.normalize's eps


def unit(t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(u, m, n)`` for ``t [N, D]``: ``u = t / max(|t_i|, eps)`` row-wise, ``m [N]`` the rows'
    max-abs (1 for zero rows) and ``n [N]`` the norms of ``t / m`` (so ``|t_i| = m_i * n_i``)."""
    m = t.abs().amax(1)
    m = torch.where(m > 0, m, torch.ones_like(m))  # [N]
    u = t / m[:, None]  # [N, D], entries in [-1, 1]
    n = torch.linalg.vector_norm(u, dim=1)  # [N], in [1, sqrt(D)] (0 for zero rows)
    big = n * m > EPS  # the true norm exceeds eps (also when n * m overflows)
    f = torch.where(big, 1 / n.clamp_min(1e-30), m / EPS)  # t / eps = u * m / eps below eps
    return u.mul_(f[:, None]), m, n


def unit_backward(u: Tensor, m: Tensor, n: Tensor, g: Tensor) -> Tensor:
    """Gradient w.r.t. ``t`` from the gradient ``g`` w.r.t. ``u``, in place in ``g``:
    ``(g - u (u . g)) / |t|`` with ``|t| = m * n`` divided in two steps (no overflow); below
    ``eps``, ``g / eps`` without the projection (as ``F.normalize``)."""
    big = n * m > EPS
    dot = torch.bmm(u.unsqueeze(1), g.unsqueeze(2)).view(-1)  # [N] row-wise u . g without an [N, D] temporary
    dot = torch.where(big, dot, torch.zeros_like(dot))
    inv = torch.where(big, n.clamp_min(1e-30).reciprocal() / m, torch.full_like(m, 1 / EPS))  # [N] 1 / |t|
    return g.addcmul_(u, dot[:, None], value=-1.0).mul_(inv[:, None])


def normalized(t: Tensor) -> Tensor:
    """Differentiable ``t / max(|t_i|, eps)`` row-wise (``[N, D]``), scale-safe like :func:`unit`:
    the rows are divided by their (constant) max-abs first, which changes neither the result
    nor its gradient."""
    m = t.detach().abs().amax(-1, keepdim=True)
    m = torch.where(m > 0, m, torch.ones_like(m))  # [N, 1]
    v = t / m
    return v / torch.maximum(torch.linalg.vector_norm(v, dim=-1, keepdim=True), EPS / m)
