"""The PyTorch chunk loop of ``linear_token_ce``: the LM head in the compute dtype, one chunk
of logits at a time in a reusable buffer, and the gradient buffers filled chunk by chunk."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from losskit.checks import compute_dtype

from losskit_plugins.tokens.kernels import RowOptions, RowStats, Targets, chunk_stats

__all__ = ["Grads", "Head", "make_head", "scan"]


class Head(NamedTuple):
    """The LM head in the compute dtype, with the chunk loop's shared state."""

    hidden: Tensor  # [N, H]
    weight: Tensor  # [V, H]
    bias: Tensor | None  # [V]
    targets: Targets
    rows: int
    opts: RowOptions

    def chunks(self) -> range:
        return range(0, self.hidden.shape[0], self.rows)

    def logits(self, start: int, buf: Tensor) -> tuple[Tensor, int, Tensor | None]:
        """Write the (capped) logits of the chunk starting at ``start`` into ``buf``; return them,
        the stop row and the cap's derivative ``[n, V]`` (None without a cap)."""
        stop = min(self.hidden.shape[0], start + self.rows)
        z = buf[: stop - start]  # [n, V]
        if self.bias is None:
            torch.mm(self.hidden[start:stop], self.weight.t(), out=z)
        else:
            torch.addmm(self.bias, self.hidden[start:stop], self.weight.t(), out=z)
        self.opts.cap_(z)
        return z, stop, self.opts.cap_factor(z)

    def buffer(self) -> Tensor:
        return self.hidden.new_empty(min(self.rows, self.hidden.shape[0]), self.weight.shape[0])


def make_head(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, index: Tensor, valid: Tensor, rows: int, opts: RowOptions
) -> Head:
    dtype = compute_dtype(hidden, weight, bias)
    return Head(
        hidden.to(dtype),
        weight.to(dtype),
        None if bias is None else bias.to(dtype),
        Targets(index, valid),
        rows,
        opts,
    )


class Grads:
    """Gradient buffers of hidden / weight / bias (None where not needed), filled chunk by chunk."""

    def __init__(self, head: Head, needs: tuple[bool, bool, bool]) -> None:
        self.hidden = torch.empty_like(head.hidden) if needs[0] else None  # [N, H]
        self.weight = torch.zeros_like(head.weight) if needs[1] else None  # [V, H]
        self.bias = torch.zeros(head.weight.shape[0], dtype=head.weight.dtype, device=head.weight.device) if needs[2] and head.bias is not None else None

    def add_chunk(self, head: Head, start: int, stop: int, dz: Tensor) -> None:
        """Accumulate the chunk's share given the logits' gradient ``dz [n, V]``."""
        if self.hidden is not None:
            torch.mm(dz, head.weight, out=self.hidden[start:stop])
        if self.weight is not None:
            self.weight.addmm_(dz.t(), head.hidden[start:stop])
        if self.bias is not None:
            self.bias.add_(dz.sum(dim=0))

    def cast(self, like: tuple[Tensor, Tensor, Tensor | None]) -> tuple[Tensor | None, ...]:
        """The gradients in the dtypes of the original inputs."""
        mine = (self.hidden, self.weight, self.bias)
        return tuple(None if g is None else g.to(x.dtype) for g, x in zip(mine, like))  # type: ignore[union-attr]


def scan(head: Head, on_chunk: Callable[[int, int, Tensor, RowStats, Tensor | None], None] | None = None) -> RowStats:
    """One pass over the chunks: per-token ``ce``, ``lse``, ``correct`` (``[N]`` each).

    ``on_chunk(start, stop, e, stats, cap_factor)`` runs after each chunk with ``e = exp(z - max)`` in the buffer.
    """
    n = head.hidden.shape[0]
    ce, lse, sum_exp = (head.hidden.new_empty(n) for _ in range(3))
    correct = torch.empty(n, dtype=torch.bool, device=head.hidden.device)
    buf = head.buffer()
    for start in head.chunks():
        z, stop, factor = head.logits(start, buf)
        stats = chunk_stats(z, head.targets.rows(start, stop), head.opts)  # z := exp(z - max)
        ce[start:stop], lse[start:stop], correct[start:stop], sum_exp[start:stop] = stats
        if on_chunk is not None:
            on_chunk(start, stop, z, stats, factor)
    return RowStats(ce, lse, correct, sum_exp)
