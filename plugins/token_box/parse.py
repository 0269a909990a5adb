"""Where the boxes are in the labels: a vectorised parse with no host synchronisation.

Every box is keyed by its *anchor*, the flat position ``[N]`` of its first token (the box
start token for digits, the first location token for loc tokens). The parse returns
fixed-size ``[N]`` tensors, so box results live in ``[N, 4]`` buffers indexed by anchor and
no data-dependent shape (``nonzero``, ``.item()``) is ever needed.

- **digits** (Qwen2-VL: ``<|box_start|>(123,45),(678,900)<|box_end|>``): a box runs from a
  start id to the next end id in the same row; inside it, maximal runs of digit tokens are
  the numbers and a digit's place value is ``10 ** (digits after it in its run)``. A box is
  well formed when it is terminated, holds exactly four numbers and no token other than
  digits and separators (an ignored label inside a box counts as a foreign token).
- **loc tokens** (Florence-2 / PaliGemma: ``<loc_12><loc_40><loc_300><loc_512>``): maximal
  runs of location tokens in a row, cut into consecutive groups of four; a run whose length
  is not a multiple of four leaves a short, malformed last box.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from losskit_plugins.token_box.config import TokenBoxConfig

__all__ = ["BoxLayout", "DeviceVocabulary", "Problems", "device_vocabulary", "parse_boxes"]


class Problems(NamedTuple):
    """Per-anchor ``[N]`` counts that make a box malformed (for error messages)."""

    numbers: Tensor  # numbers (digit runs / location tokens) in the box; 4 when well formed
    foreign: Tensor  # tokens inside the box that are neither digits nor separators (digits only)
    closed: Tensor  # 1 when the box has its end token (digits only; loc boxes always 1)


class BoxLayout(NamedTuple):
    """The parsed labels; every tensor is ``[N]`` over the flat (shifted) label positions."""

    value: Tensor  # long: index of the label among the coordinate tokens (0 where none)
    is_coord: Tensor  # bool: a coordinate token of a well-formed box
    slot: Tensor  # long: anchor * 4 + which number (0-3) of its box the token belongs to
    place: Tensor  # float: place value of the token's digit (1 for loc tokens)
    box_ok: Tensor  # bool: the anchor of a well-formed box
    box_bad: Tensor  # bool: the anchor of a malformed box
    problems: Problems


class DeviceVocabulary(NamedTuple):
    """The coordinate vocabulary as tensors on one device."""

    ids: Tensor  # [K] long: the coordinate token ids in value order
    table: Tensor  # [V] long: index of each token id among the coordinate tokens, -1 elsewhere
    separators: Tensor | None  # [S] long: the separator ids (digits), None when any token separates


@functools.lru_cache(maxsize=32)
def device_vocabulary(
    ids: tuple[int, ...], separators: tuple[int, ...] | None, num_classes: int, device: torch.device
) -> DeviceVocabulary:
    """Build (once per vocabulary, size and device: a host-to-device copy is a synchronisation) the tensors."""
    ids_t = torch.tensor(ids, dtype=torch.long, device=device)
    table = torch.full((num_classes,), -1, dtype=torch.long, device=device)
    table.index_copy_(0, ids_t, torch.arange(len(ids), device=device))
    seps = None if not separators else torch.tensor(separators, dtype=torch.long, device=device)
    return DeviceVocabulary(ids_t, table, seps)


def _last(flags: Tensor, positions: Tensor) -> Tensor:
    """``[R, T]``: the latest position ``<= t`` in its row where ``flags`` holds, -1 if none."""
    return torch.where(flags, positions, -1).cummax(1).values


def _per_anchor(values: Tensor, anchor: Tensor, n: int) -> Tensor:
    """Sum ``values [R, T]`` into ``[N]`` at their ``anchor [R, T]`` (flat positions)."""
    return torch.zeros(n, dtype=torch.long, device=values.device).index_add_(0, anchor.reshape(-1), values.reshape(-1).long())


def _after(flags: Tensor) -> Tensor:
    """``[R, T]``: ``flags`` moved one position right in each row (False at t = 0)."""
    return F.pad(flags[:, :-1], (1, 0), value=False)


def _parse_digits(cfg: TokenBoxConfig, labels: Tensor, coord: Tensor, seps: Tensor | None) -> tuple[Tensor, ...]:
    """Digits: ``(member, anchor, number, place, is_anchor, problems)``, each ``[R, T]`` (problems ``[N]``)."""
    r, t = labels.shape
    n = r * t
    pos = torch.arange(t, device=labels.device).expand(r, t)  # [R, T]
    row0 = (torch.arange(r, device=labels.device) * t)[:, None]  # [R, 1] flat index of each row's start
    is_start, is_end = labels == cfg.box_start_id, labels == cfg.box_end_id
    last_start, last_end = _last(is_start, pos), _last(is_end, pos)
    inside = (last_start > last_end) & ~is_start  # [R, T] strictly between a start and its end
    anchor = (row0 + last_start.clamp(min=0)).reshape(r, t)
    prev_end = F.pad(last_end[:, :-1], (1, 0), value=-1)
    closes = is_end & (last_start > prev_end)  # this end closes the open box
    digit = inside & (coord >= 0)
    if seps is not None:
        foreign = inside & (coord < 0) & ~torch.isin(labels, seps)
    else:
        foreign = inside & (coord < 0) & (labels == cfg.ignore_index)
    run_start = digit & ~_after(digit)
    runs = run_start.long().cumsum(1)  # [R, T] digit runs so far in the row
    before = runs.gather(1, last_start.clamp(min=0))  # [R, T] runs before the box's start token
    number = (runs - before - 1).clamp(0, 3)
    nxt = torch.where(digit, t, pos).flip(1).cummin(1).values.flip(1)  # first non-digit position >= t
    place = torch.pow(10.0, (nxt - pos - 1).clamp(min=0).double())
    problems = Problems(
        _per_anchor(run_start, anchor, n), _per_anchor(foreign, anchor, n), _per_anchor(closes, anchor, n)
    )
    return digit, anchor, number, place, is_start, problems


def _parse_loc(labels: Tensor, coord: Tensor) -> tuple[Tensor, ...]:
    """Loc tokens: ``(member, anchor, number, place, is_anchor, problems)`` as :func:`_parse_digits`."""
    r, t = labels.shape
    pos = torch.arange(t, device=labels.device).expand(r, t)
    loc = coord >= 0
    offset = pos - _last(loc & ~_after(loc), pos)  # position within the run of location tokens
    number = offset % 4
    flat = torch.arange(r * t, device=labels.device).reshape(r, t)
    anchor = torch.where(loc, flat - number, flat)
    count = _per_anchor(loc, anchor, r * t)
    ones = torch.ones_like(count)
    return loc, anchor, number, torch.ones(r, t, dtype=torch.float64, device=labels.device), loc & (number == 0), Problems(count, ones - 1, ones)


def parse_boxes(cfg: TokenBoxConfig, labels: Tensor, vocab: DeviceVocabulary) -> BoxLayout:
    """Parse shifted ``labels [R, T]`` (long, ``ignore_index`` kept) into a :class:`BoxLayout`."""
    valid = labels != cfg.ignore_index
    coord = torch.where(valid, vocab.table[torch.where(valid, labels, 0)], -1)  # [R, T] coordinate index or -1
    if cfg.style == "digits":
        member, anchor, number, place, is_anchor, problems = _parse_digits(cfg, labels, coord, vocab.separators)
    else:
        member, anchor, number, place, is_anchor, problems = _parse_loc(labels, coord)
    ok = (problems.numbers == 4) & (problems.foreign == 0) & (problems.closed == 1)  # [N] per anchor
    is_anchor = is_anchor.reshape(-1)
    anchor = anchor.reshape(-1)
    is_coord = member.reshape(-1) & ok[anchor]
    return BoxLayout(
        value=coord.reshape(-1).clamp(min=0),
        is_coord=is_coord,
        slot=anchor * 4 + number.reshape(-1),
        place=place.reshape(-1),
        box_ok=is_anchor & ok,
        box_bad=is_anchor & ~ok,
        problems=problems,
    )
