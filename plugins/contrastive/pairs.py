"""Which entries of a ``[R, C]`` similarity matrix are positives: :class:`Pairs`.

A row ``i`` (an anchor: an image, a query) and a column ``j`` (a text, a key) are a
positive pair when, in order of precedence,

- an explicit ``positive_mask[i, j]`` is True, or
- they share a group id (``row_groups[i] == col_groups[j]``), or
- with neither: ``j == i + offset`` (the matching pair; ``offset`` is the first global
  row of this rank's shard when rows are local and columns gathered), or
- ``none``: no entry is (open_clip's ``negative_only`` SigLIP chunks).

Every other entry is a negative. Every query has a fixed output shape (no ``nonzero``,
``bincount`` or ``repeat_interleave`` on the data), so nothing here waits on the device:
tiles rebuild their positive mask from the ids, and counts come from sorted ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Pairs"]


@dataclass(frozen=True)
class Pairs:
    """Positives of an ``[R, C]`` matrix (see the module docstring).

    Attributes:
        num_rows, num_cols: ``R`` and ``C``.
        device: where the index tensors live.
        offset: column of row 0's positive in diagonal mode.
        row_groups, col_groups: ``[R]``/``[C]`` int64 ids in group mode.
        mask: ``[R, C]`` bool in mask mode.
        none: no positives at all.
    """

    num_rows: int
    num_cols: int
    device: torch.device
    offset: int = 0
    row_groups: Tensor | None = None
    col_groups: Tensor | None = None
    mask: Tensor | None = None
    none: bool = False

    # ------------------------------------------------------------ constructors
    @classmethod
    def diagonal(cls, num_rows: int, num_cols: int, *, offset: int = 0, device: torch.device | None = None) -> Pairs:
        """Row ``i``'s only positive is column ``i + offset``."""
        return cls(num_rows, num_cols, torch.device(device or "cpu"), offset=offset)

    @classmethod
    def from_groups(cls, row_groups: Tensor, col_groups: Tensor) -> Pairs:
        """Rows and columns with equal ids are positives (``[R]``, ``[C]`` integer ids)."""
        return cls(row_groups.numel(), col_groups.numel(), row_groups.device, row_groups=row_groups, col_groups=col_groups)

    @classmethod
    def from_mask(cls, mask: Tensor) -> Pairs:
        """Explicit ``[R, C]`` bool mask of positives."""
        return cls(mask.shape[0], mask.shape[1], mask.device, mask=mask)

    @classmethod
    def nothing(cls, num_rows: int, num_cols: int, device: torch.device) -> Pairs:
        """No positives: every entry is a negative."""
        return cls(num_rows, num_cols, device, none=True)

    # ------------------------------------------------------------ queries
    @property
    def single(self) -> bool:
        """Exactly the pairs ``(i, i + offset)`` (no ids, no mask)."""
        return self.mask is None and self.row_groups is None and not self.none

    def row_count(self, dtype: torch.dtype) -> Tensor:
        """``[R]`` number of positives of each row."""
        return self._counts(True).to(dtype)

    def col_count(self, dtype: torch.dtype) -> Tensor:
        """``[C]`` number of positives of each column."""
        return self._counts(False).to(dtype)

    def _counts(self, by_rows: bool) -> Tensor:
        n = self.num_rows if by_rows else self.num_cols
        if self.none:
            return torch.zeros(n, dtype=torch.long, device=self.device)
        if self.mask is not None:
            return self.mask.sum(1 if by_rows else 0)
        if self.row_groups is not None:
            assert self.col_groups is not None
            mine, other = (self.row_groups, self.col_groups) if by_rows else (self.col_groups, self.row_groups)
            ids = other.sort().values  # [n_other]
            return torch.searchsorted(ids, mine, right=True) - torch.searchsorted(ids, mine)
        idx = torch.arange(n, device=self.device)
        if by_rows:
            return torch.ones_like(idx)
        return ((idx >= self.offset) & (idx < self.offset + self.num_rows)).long()

    def positives(self, r0: int, r1: int, out: Tensor | None = None) -> Tensor:
        """``[r1 - r0, C]`` bool: positives of rows ``r0:r1`` (written into ``out`` when given)."""
        if self.mask is not None:
            return self.mask[r0:r1]
        rows = r1 - r0
        if out is None:
            out = torch.empty(rows, self.num_cols, dtype=torch.bool, device=self.device)
        if self.row_groups is not None:
            assert self.col_groups is not None
            return torch.eq(self.row_groups[r0:r1, None], self.col_groups[None, :], out=out)
        out.zero_()
        if not self.none:
            out.diagonal(r0 + self.offset).fill_(True)
        return out

    def is_positive(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Elementwise: is ``(rows[k], cols[k])`` a positive pair?"""
        if self.none:
            return torch.zeros_like(rows, dtype=torch.bool)
        if self.mask is not None:
            return self.mask[rows, cols]
        if self.row_groups is not None:
            assert self.col_groups is not None
            return self.row_groups[rows] == self.col_groups[cols]
        return cols == rows + self.offset

    def pad_columns(self, m: int) -> Pairs:
        """The same positives with ``m`` more columns that are nobody's positive."""
        if self.mask is not None:
            return Pairs.from_mask(F.pad(self.mask, (0, m)))
        if self.row_groups is not None:
            assert self.col_groups is not None
            sentinel = torch.minimum(self.row_groups.min(), self.col_groups.min()) - 1  # an id no row has
            return Pairs.from_groups(self.row_groups, torch.cat([self.col_groups, sentinel.expand(m)]))
        return Pairs(self.num_rows, self.num_cols + m, self.device, offset=self.offset, none=self.none)
