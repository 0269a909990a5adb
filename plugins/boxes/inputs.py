"""Input handling of the ``bbox`` loss: argument checks, dtype, box formats, degenerate boxes.

Every check raises ``TypeError``/``ValueError`` naming the argument, the expected
shape or dtype and, for bad coordinates, the first offending box index. The value
checks (finite coordinates, box order) follow the loss's ``check_inputs`` (see
:mod:`losskit.checks`) and are batched into one device synchronisation.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from losskit.checks import check_float, check_same_device, check_size

__all__ = [
    "BoxFormat",
    "Degenerate",
    "check_boxes",
    "check_num_boxes",
    "check_weights",
    "WIDE_ABOVE",
    "cast_saturating",
    "clamp_degenerate",
    "to_rows",
    "validate_values",
]

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
Degenerate = Literal["raise", "clamp"]


#: Above this coordinate magnitude fp32 areas and squared diagonals may overflow
#: (fp32 max ~3.4e38): such calls are computed in float64 instead.
WIDE_ABOVE = 1e18


class _SaturatingCast(torch.autograd.Function):
    """``t.to(dtype)`` whose values and gradients saturate at the narrower dtype's largest finite value."""

    @staticmethod
    def forward(ctx: Any, t: Tensor, dtype: torch.dtype) -> Tensor:
        ctx.dtype = t.dtype
        big = torch.finfo(dtype).max
        return (t.clamp(-big, big) if torch.finfo(t.dtype).max > big else t).to(dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        big = torch.finfo(ctx.dtype).max
        return (grad.clamp(-big, big) if torch.finfo(grad.dtype).max > big else grad).to(ctx.dtype), None


def cast_saturating(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t.to(dtype)``, differentiable; nothing overflows to ``inf`` on the way, in either direction.

    A value beyond ``dtype``'s range becomes its largest finite value; in the backward,
    a gradient too large for ``t``'s dtype (e.g. above 65504 for fp16) becomes that
    dtype's largest finite value, where ``Tensor.to`` would give ``inf``.
    """
    return t if t.dtype == dtype else _SaturatingCast.apply(t, dtype)



def check_boxes(pred: object, target: object) -> tuple[Tensor, Tensor]:
    """Check ``pred [N, 4]`` and ``target [N, 4]``: float tensors, same shape and device."""
    pred = check_float(pred, "pred", 2, layout="[N, 4]")
    target = check_float(target, "target", 2, layout="[N, 4]")
    check_size(pred, "pred", 1, 4, "the 4 box coordinates")
    check_size(target, "target", 1, 4, "the 4 box coordinates")
    check_size(target, "target", 0, pred.shape[0], "the number of boxes in pred")
    check_same_device(pred=pred, target=target)
    return pred, target


def check_weights(weights: object, n: int, device: torch.device) -> Tensor:
    """Check per-box ``weights [N]`` (float, on the boxes' device)."""
    weights = check_float(weights, "weights", 1, layout="[N]")
    check_size(weights, "weights", 0, n, "the number of boxes in pred")
    if weights.device != device:
        raise ValueError(f"weights: expected a tensor on {device} (the boxes' device), got {weights.device}")
    return weights


def check_num_boxes(num_boxes: object, device: torch.device) -> Tensor | float:
    """Check the ``num_boxes`` normaliser; return it clamped to at least 1.

    A Python number must be finite and non-negative. A tensor must hold one
    number and is clamped on its device (no synchronisation).
    """
    if isinstance(num_boxes, bool):
        raise TypeError("num_boxes: expected a number or a one-element tensor, got bool")
    if isinstance(num_boxes, Tensor):
        if num_boxes.numel() != 1 or num_boxes.dtype == torch.bool or num_boxes.is_complex():
            raise ValueError(
                f"num_boxes: expected a one-element real tensor, got shape {tuple(num_boxes.shape)} dtype {num_boxes.dtype}"
            )
        if num_boxes.device != device:
            raise ValueError(f"num_boxes: expected a tensor on {device} (the boxes' device), got {num_boxes.device}")
        return num_boxes.reshape(()).to(torch.float32).clamp(min=1.0)
    if not isinstance(num_boxes, (int, float)):
        raise TypeError(f"num_boxes: expected a number or a one-element tensor, got {type(num_boxes).__name__}")
    if not (num_boxes >= 0 and num_boxes != float("inf")):
        raise ValueError(f"num_boxes: expected a finite number >= 0, got {num_boxes}")
    return max(float(num_boxes), 1.0)


def to_rows(boxes: Tensor, box_format: BoxFormat) -> Tensor:
    """``[N, 4]`` boxes in ``box_format`` to xyxy coordinate rows ``[4, N]`` (contiguous; differentiable).

    Conversion by ``torchvision.ops.box_convert``; rows x1, y1, x2, y2 make every later
    elementwise pass run over contiguous memory.
    """
    if box_format == "xyxy":
        xyxy = boxes
    else:
        from torchvision.ops import box_convert  # imported here: torchvision costs seconds at CLI start-up

        xyxy = box_convert(boxes, in_fmt=box_format, out_fmt="xyxy")
    return xyxy.t().contiguous()


def _unordered(rows: Tensor) -> Tensor:
    """``[2, N]`` bool of ``[4, N]`` xyxy rows: ``x2 < x1`` (row 0), ``y2 < y1`` (row 1)."""
    return rows[2:] < rows[:2]


def validate_values(
    named: dict[str, Tensor],
    *,
    finite: bool,
    ordered: dict[str, tuple[Tensor, BoxFormat]] | None = None,
    wide: tuple[str, ...] = (),
) -> bool:
    """Check values with one device synchronisation; on failure, find and name the culprit.

    Args:
        named: tensors whose entries must be finite (first dimension = box index, or 0-d).
        finite: check finiteness at all (one min/max pass per tensor; NaN propagates).
        ordered: ``{name: (rows [4, N], original_format)}`` whose boxes must have
            ``x1 <= x2`` and ``y1 <= y2`` (the ``degenerate="raise"`` policy).
        wide: names in ``named`` whose magnitude is compared with :data:`WIDE_ABOVE`
            (the same min/max pass).

    Returns:
        Whether some tensor named in ``wide`` holds a value beyond :data:`WIDE_ABOVE`.
    """
    ordered = ordered or {}
    bad: list[Tensor] = []
    large: list[Tensor] = []
    for name, t in named.items():
        if t.numel() == 0 or not (finite or name in wide):
            continue
        lo, hi = torch.aminmax(t.detach())
        if finite:
            bad.append(~(torch.isfinite(lo) & torch.isfinite(hi)))
        if name in wide:
            large.append(torch.maximum(-lo, hi) > WIDE_ABOVE)
    bad += [_unordered(rows.detach()).any() for rows, _ in ordered.values()]
    if not bad and not large:
        return False
    flags = torch.stack(bad + large).tolist()  # the one synchronisation
    if any(flags[: len(bad)]):
        _raise_bad_values(named if finite else {}, ordered)
    return any(flags[len(bad) :])


def _first_bad(mask: Tensor) -> tuple[int, int]:
    """(first index, count) of the True entries of ``mask [N]``."""
    rows = mask.nonzero().flatten()
    return int(rows[0]), int(rows.numel())


def _raise_bad_values(named: dict[str, Tensor], ordered: dict[str, tuple[Tensor, BoxFormat]]) -> None:
    """Raise a ValueError naming the first tensor and box index that failed :func:`validate_values`."""
    for name, t in named.items():
        nonfinite = ~torch.isfinite(t.detach())
        if t.dim() == 0 and nonfinite:
            raise ValueError(f"{name}: expected a finite value, got {t.item()}")
        if nonfinite.any():
            index, count = _first_bad(nonfinite.reshape(t.shape[0], -1).any(1))
            raise ValueError(f"{name}: expected finite values, got NaN or inf at index {index} ({count} row(s) in all)")
    for name, (rows, fmt) in ordered.items():
        inverted = _unordered(rows.detach()).any(0)
        if inverted.any():
            index, count = _first_bad(inverted)
            corners = [round(v, 6) for v in rows[:, index].detach().tolist()]
            via = "" if fmt == "xyxy" else f" (converted from {fmt})"
            raise ValueError(
                f"{name}: degenerate box at index {index} ({count} in all): xyxy{via} {corners} has x2 < x1 "
                "or y2 < y1; fix the boxes or set degenerate='clamp' to collapse such boxes to their centre"
            )


def clamp_degenerate(rows: Tensor) -> Tensor:
    """Collapse each inverted side of xyxy ``rows [4, N]`` to its centre (the ``degenerate="clamp"`` policy).

    Where ``x2 < x1`` both become ``(x1 + x2) / 2`` (likewise for y), so the box has
    zero width but keeps its centre, and the gradient reaches the centre only.
    Well-ordered sides pass through unchanged, values and gradients.
    """
    lo, hi = rows[:2], rows[2:]  # [2, N] min and max corner
    inverted = hi < lo
    centre = lo * 0.5 + hi * 0.5  # no overflow for huge coordinates
    return torch.cat((torch.where(inverted, centre, lo), torch.where(inverted, centre, hi)))
