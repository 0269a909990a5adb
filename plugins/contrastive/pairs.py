"""Which entries of a ``[R, C]`` similarity matrix are positives: :class:`Pairs`.

A row ``i`` (an anchor: an image, a query) and a column ``j`` (a text, a key) are a
positive pair when, in order of precedence,

- an explicit ``positive_mask[i, j]`` is True, or
- they share a group id (``row_groups[i] == col_groups[j]``), or
- with neither: ``j == i + offset`` (the matching pair; ``offset`` is the first global
  row of this rank's shard when rows are local and columns gathered).

Every other entry is a negative. The positive pairs are kept sparse (``[P]`` index
vectors, sorted by row): the losses gather their logits instead of building one-hot
targets, and tiles rebuild their negative mask from the ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Pairs"]


@dataclass(frozen=True)
class Pairs:
    """Positive pairs of an ``[R, C]`` matrix (see the module docstring).

    Attributes:
        rows, cols: ``[P]`` long indices of the positive entries, sorted by row.
        num_rows, num_cols: ``R`` and ``C``.
        single: exactly the pairs ``(i, i + offset)`` (no ids, no mask).
        offset: column of row 0's positive in ``single`` mode.
        row_groups, col_groups: ``[R]``/``[C]`` ids in group mode.
        mask: ``[R, C]`` bool in mask mode.
    """

    rows: Tensor
    cols: Tensor
    num_rows: int
    num_cols: int
    single: bool = False
    offset: int = 0
    row_groups: Tensor | None = None
    col_groups: Tensor | None = None
    mask: Tensor | None = None

    # ------------------------------------------------------------ constructors
    @classmethod
    def diagonal(cls, num_rows: int, num_cols: int, *, offset: int = 0, device: torch.device | None = None) -> Pairs:
        """Row ``i``'s only positive is column ``i + offset``."""
        rows = torch.arange(num_rows, device=device)
        return cls(rows, rows + offset, num_rows, num_cols, single=True, offset=offset)

    @classmethod
    def from_groups(cls, row_groups: Tensor, col_groups: Tensor) -> Pairs:
        """Rows and columns with equal ids are positives (``[R]``, ``[C]`` integer ids)."""
        sorted_ids, perm = col_groups.sort(stable=True)
        lo = torch.searchsorted(sorted_ids, row_groups, right=False)  # [R]
        hi = torch.searchsorted(sorted_ids, row_groups, right=True)
        counts = hi - lo
        rows = torch.repeat_interleave(torch.arange(row_groups.numel(), device=row_groups.device), counts)
        starts = torch.repeat_interleave(lo, counts)
        within = torch.arange(rows.numel(), device=rows.device) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        cols = perm[starts + within]
        return cls(rows, cols, row_groups.numel(), col_groups.numel(), row_groups=row_groups, col_groups=col_groups)

    @classmethod
    def from_mask(cls, mask: Tensor) -> Pairs:
        """Explicit ``[R, C]`` bool mask of positives."""
        rows, cols = mask.nonzero(as_tuple=True)
        return cls(rows, cols, mask.shape[0], mask.shape[1], mask=mask)

    # ------------------------------------------------------------ queries
    def row_count(self, dtype: torch.dtype) -> Tensor:
        """``[R]`` number of positives of each row."""
        return torch.bincount(self.rows, minlength=self.num_rows).to(dtype)

    def col_count(self, dtype: torch.dtype) -> Tensor:
        """``[C]`` number of positives of each column."""
        return torch.bincount(self.cols, minlength=self.num_cols).to(dtype)

    def block_bounds(self, starts: list[int]) -> list[int]:
        """Index into ``rows``/``cols`` where the pairs of each row block start (plus the end)."""
        bounds = torch.searchsorted(self.rows, torch.tensor(starts + [self.num_rows], device=self.rows.device))
        return bounds.tolist()

    def positives(self, r0: int, r1: int) -> Tensor:
        """``[r1 - r0, C]`` bool: positives of rows ``r0:r1``."""
        if self.mask is not None:
            return self.mask[r0:r1]
        if self.row_groups is not None:
            assert self.col_groups is not None
            return self.row_groups[r0:r1, None] == self.col_groups[None, :]
        cols = torch.arange(self.num_cols, device=self.rows.device)
        return cols[None, :] == (torch.arange(r0, r1, device=self.rows.device) + self.offset)[:, None]

    def is_positive(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Elementwise: is ``(rows[k], cols[k])`` a positive pair?"""
        if self.mask is not None:
            return self.mask[rows, cols]
        if self.row_groups is not None:
            assert self.col_groups is not None
            return self.row_groups[rows] == self.col_groups[cols]
        return cols == rows + self.offset
