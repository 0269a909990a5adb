"""The sigmoid kernel of the engine (``siglip``, Zhai et al. 2023): forward and backward.

``L_i = sum_{n in N_i} softplus(s_in) + sum_{p in P_i} softplus(-s_ip)``, i.e.
``-sum_j log sigmoid(z_ij)`` with ``z = -s`` on positives and ``s`` elsewhere: the positive
term is ``softplus(-s)`` itself, not ``softplus(s) - s`` (no cancellation: 3.58e-17 at
``s = 37.9``, as big_vision). ``dL/ds = sign * sigmoid(z)``, with ``sign = -1`` on positives.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from losskit_plugins.contrastive.pairs import Pairs
from losskit_plugins.contrastive.tiles import GradAccumulator, Tiles, softplus_

__all__ = ["sigmoid_backward", "sigmoid_forward"]


def _flip_positives(T: Tensor, P: Pairs, a: int, b: int, tiles: Tiles) -> Tensor | None:
    """Negate the positives' entries of the block ``T [b - a, C]`` of rows ``a:b`` in place
    (``T - 2 * T * pos`` in the mask forms); return the positives mask where one was built."""
    if P.none:
        return None
    if P.single:
        T.diagonal(a + P.offset).neg_()
        return None
    pos = P.positives(a, b, out=tiles.buffer("positives", b - a, torch.bool))
    scratch = torch.mul(T, pos, out=tiles.buffer("work2", b - a)).mul_(-2.0)
    T.add_(scratch)
    return pos


def sigmoid_forward(tiles: Tiles, P: Pairs, on_block: Callable[[int, int, Tensor, Tensor | None], None]) -> tuple[Tensor | None, Tensor]:
    """``(saved dense logits or None, row_loss [R])``; ``on_block`` sees every block (metrics)."""
    row_loss = tiles.x.new_zeros(tiles.x.shape[0])
    for a, b, S in tiles.blocks():
        Z = tiles.buffer("work", b - a).copy_(S)
        pos = _flip_positives(Z, P, a, b, tiles)
        row_loss[a:b] = softplus_(Z, tiles.buffer("work2", b - a)).sum(1)
        on_block(a, b, S, pos)
    return (tiles.buffer("logits", tiles.x.shape[0]) if tiles.dense else None), row_loss


def sigmoid_backward(saved: Tensor | None, tiles: Tiles, P: Pairs, g_r: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients w.r.t. ``x``, ``y``, the scale and the bias."""
    acc = GradAccumulator(tiles.x, tiles.y)
    for a, b, S in tiles.blocks(saved):
        G = tiles.buffer("grad", b - a).copy_(S)
        _flip_positives(G, P, a, b, tiles)  # z
        G.sigmoid_()
        _flip_positives(G, P, a, b, tiles)  # sign * sigmoid(z)
        acc.add(G.mul_(g_r[a:b, None]), a, b)
    return acc.finish(tiles.scale)
