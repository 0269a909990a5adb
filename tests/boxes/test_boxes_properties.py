"""Properties of ``bbox``: symmetry, translation invariance, GIoU range, no NaN/inf, empty batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import losskit


@st.composite
def valid_boxes(draw: st.DrawFn, n: int) -> torch.Tensor:
    """``[n, 4]`` float64 xyxy boxes with corners on a 1/8 grid (exact translations) and any size >= 0."""
    grid = st.integers(-16, 16).map(lambda v: v / 8)
    side = st.integers(0, 16).map(lambda v: v / 8)
    rows = []
    for _ in range(n):
        x, y, w, h = draw(grid), draw(grid), draw(side), draw(side)
        rows.append([x, y, x + w, y + h])
    return torch.tensor(rows, dtype=torch.float64).reshape(n, 4)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    n = draw(st.integers(1, 6))
    return draw(valid_boxes(n)), draw(valid_boxes(n))


def per_box(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return losskit.build("bbox", iou_loss=kind, l1_weight=0.0, reduction="none")(pred, target)


@given(boxes=pairs(), kind=st.sampled_from(["iou", "giou", "diou"]))
def test_symmetric_in_pred_and_target(boxes, kind: str) -> None:
    pred, target = boxes
    torch.testing.assert_close(per_box(kind, pred, target), per_box(kind, target, pred), rtol=1e-12, atol=1e-12)


@given(
    boxes=pairs(),
    kind=st.sampled_from(["iou", "giou", "diou", "ciou"]),
    shift=st.tuples(st.integers(-64, 64), st.integers(-64, 64)),
)
def test_invariant_to_translating_both_boxes(boxes, kind: str, shift) -> None:
    pred, target = boxes
    offset = torch.tensor([shift[0] / 4, shift[1] / 4] * 2, dtype=torch.float64)  # exact in float64
    moved = per_box(kind, pred + offset, target + offset)
    torch.testing.assert_close(moved, per_box(kind, pred, target), rtol=1e-12, atol=1e-12)


@given(boxes=pairs(), kind=st.sampled_from(["iou", "giou", "diou", "ciou"]))
def test_invariant_to_swapping_the_x_and_y_axes(boxes, kind: str) -> None:
    # point boxes included: counting them as square keeps CIoU's aspect term symmetric
    pred, target = boxes
    swap = [1, 0, 3, 2]
    torch.testing.assert_close(
        per_box(kind, pred[:, swap], target[:, swap]), per_box(kind, pred, target), rtol=1e-12, atol=1e-12
    )


@given(boxes=pairs())
def test_giou_loss_lies_in_0_2_and_iou_loss_in_0_1(boxes) -> None:
    pred, target = boxes
    giou = per_box("giou", pred, target)
    assert ((giou >= 0) & (giou <= 2)).all()
    iou = per_box("iou", pred, target)
    assert ((iou >= 0) & (iou <= 1)).all()
    assert (giou >= iou - 1e-12).all()  # the enclosing-box penalty is >= 0


def finite_coords():
    """``[n, 4]`` float32 arrays of any finite values, extremes and subnormals included."""
    big = float(np.finfo(np.float32).max)
    special = st.sampled_from([0.0, -0.0, 1.0, 1e-3, 2.0**-14, 1e-40, 1e18, 1e30, big, -big])
    values = st.one_of(special, st.floats(allow_nan=False, allow_infinity=False, width=32))
    return arrays("float32", st.tuples(st.integers(0, 6), st.just(4)), elements=values)


@given(
    pred=finite_coords(),
    data=st.data(),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    kind=st.sampled_from(["iou", "giou", "diou", "ciou"]),
    fmt=st.sampled_from(["xyxy", "xywh", "cxcywh"]),
)
def test_no_nan_or_inf_under_clamp_for_any_finite_input(pred, data, dtype, kind: str, fmt: str) -> None:
    n = pred.shape[0]
    target = data.draw(finite_coords().filter(lambda a: a.shape[0] == n) | st.just(pred.copy()))
    bound = torch.finfo(dtype).max  # stay finite in dtype
    p = torch.from_numpy(pred).clamp(-bound, bound).to(dtype).requires_grad_(True)
    t = torch.from_numpy(target).clamp(-bound, bound).to(dtype).requires_grad_(True)
    loss = losskit.build("bbox", iou_loss=kind, box_format=fmt, degenerate="clamp", smooth_l1_beta=0.1)
    value = loss(p, t)
    assert value.dtype == torch.float32
    assert torch.isfinite(value)
    gp, gt = torch.autograd.grad(value, (p, t))
    assert torch.isfinite(gp).all() and torch.isfinite(gt).all()
    assert gp.dtype == dtype


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["none", "giou", "ciou"])
def test_empty_batch_gives_zero_connected_to_the_graph(reduction: str, kind: str) -> None:
    pred = torch.zeros(0, 4, requires_grad=True)
    out = losskit.build("bbox", iou_loss=kind, reduction=reduction).compute(pred, torch.zeros(0, 4), num_boxes=None)
    expected_shape = (0,) if reduction == "none" else ()
    assert out.loss.shape == expected_shape
    assert out.loss.grad_fn is not None
    assert torch.equal(out.loss.sum(), torch.tensor(0.0))
    (grad,) = torch.autograd.grad(out.loss.sum(), pred)
    assert grad.shape == (0, 4)
    assert out.metrics["mean_iou"].item() == 0.0


def test_empty_batch_with_num_boxes() -> None:
    pred = torch.zeros(0, 4, requires_grad=True)
    value = losskit.build("bbox", preset="detr")(pred, torch.zeros(0, 4), num_boxes=torch.tensor(3.0))
    assert value.item() == 0.0
    value.backward()
    assert pred.grad is not None and pred.grad.shape == (0, 4)


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_huge_fp32_coordinates_are_computed_in_float64(kind: str) -> None:
    # areas of 1e50 overflow float32; the loss switches to float64 and stays scale-invariant
    pred = torch.tensor([[0.1, 0.2, 0.6, 0.7], [0.0, 0.0, 1.0, 2.0]])
    target = torch.tensor([[0.3, 0.1, 0.5, 0.9], [2.0, 1.0, 3.0, 1.5]])
    loss = losskit.build("bbox", iou_loss=kind, l1_weight=0.0, reduction="none")
    scaled = (pred * 1e25).requires_grad_(True)
    value = loss(scaled, target * 1e25)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, loss(pred, target), rtol=1e-5, atol=1e-5)
    (grad,) = torch.autograd.grad(value.sum(), scaled)
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all() and grad.abs().max() > 0
