"""The cross-process layout of the similarity matrix: which rows this process scores against
which columns, and where the positives are (:class:`Layout`, :func:`layout`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from losskit import distributed as dist
from losskit_plugins.contrastive.pairs import Pairs

__all__ = ["Layout", "layout"]


@dataclass
class Layout:
    """How one side ``a [n, D]`` is scored against the other side ``b``.

    ``rows`` are the anchors this process scores (local shard with ``local_loss``,
    else every gathered sample), ``cols`` every gathered candidate; ``pairs`` marks
    the positives of ``[len(rows), len(cols)]``. ``square`` is True when rows and
    cols are the same global batch (one matrix then serves both directions).
    """

    rows: Tensor
    cols: Tensor
    pairs: Pairs
    square: bool


def layout(
    a: Tensor,
    b: Tensor,
    group_ids: Tensor | None,
    *,
    gather: bool,
    local_loss: bool,
    mask: Tensor | None = None,
) -> tuple[Layout, Callable[[], Layout]]:
    """Arrange ``a -> b`` (and lazily ``b -> a``) for this process.

    Without gathering both are the local batch. With gathering, features are
    all-gathered with gradient (:func:`losskit.distributed.all_gather_with_grad`) and
    ``group_ids`` (global ids) without; with ``local_loss`` rows stay local and the
    matching pair of local row ``i`` is global column ``rank * n + i``.
    """
    n = a.shape[0]
    if not gather:
        pairs = _pairs(n, n, 0, group_ids, group_ids, mask, a.device)
        return Layout(a, b, pairs, True), lambda: Layout(b, a, _pairs(n, n, 0, group_ids, group_ids, None if mask is None else mask.T, a.device), True)
    if mask is not None:
        raise ValueError("positive_mask: not supported when gathering across processes; use group_ids (global ids)")
    a_all = dist.all_gather_with_grad(a, name="features")
    b_all = dist.all_gather_with_grad(b, name="features")
    g_all = None if group_ids is None else dist.all_gather_no_grad(group_ids, name="group_ids")
    if not local_loss:
        N = a_all.shape[0]
        return Layout(a_all, b_all, _pairs(N, N, 0, g_all, g_all, None, a.device), True), lambda: Layout(
            b_all, a_all, _pairs(N, N, 0, g_all, g_all, None, a.device), True
        )
    offset = dist.rank() * n
    N = b_all.shape[0]
    return Layout(a, b_all, _pairs(n, N, offset, group_ids, g_all, None, a.device), False), lambda: Layout(
        b, a_all, _pairs(n, N, offset, group_ids, g_all, None, a.device), False
    )


def _pairs(R: int, Cn: int, offset: int, gr: Tensor | None, gc: Tensor | None, mask: Tensor | None, device: torch.device) -> Pairs:
    if mask is not None:
        return Pairs.from_mask(mask)
    if gr is not None:
        assert gc is not None
        return Pairs.from_groups(gr, gc)
    return Pairs.diagonal(R, Cn, offset=offset, device=device)
