"""Hand-computed ``bbox`` cases, and the exact cases where torchvision falls short."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import complete_box_iou_loss, generalized_box_iou_loss

import losskit

KINDS = ["iou", "giou", "diou", "ciou"]


def per_box(kind: str, pred, target, **config) -> torch.Tensor:
    loss = losskit.build("bbox", iou_loss=kind, l1_weight=0.0, reduction="none", **config)
    return loss(torch.tensor(pred, dtype=torch.float64), torch.tensor(target, dtype=torch.float64))


EPS = 1e-7


def test_nested_boxes() -> None:
    # target [1,1,2,2] (area 1) inside pred [0,0,4,4] (area 16): IoU = 1/16, enclosing = pred
    iou = 1 / (16 + EPS)
    got = {k: per_box(k, [[0, 0, 4, 4]], [[1, 1, 2, 2]]).item() for k in KINDS}
    assert got["iou"] == pytest.approx(1 - iou, abs=1e-12)
    assert got["giou"] == pytest.approx(1 - iou + 0.0, abs=1e-12)  # enclosing box = union
    # centres (2, 2) and (1.5, 1.5): rho^2 = 0.5; diagonal^2 = 32
    assert got["diou"] == pytest.approx(1 - iou + 0.5 / (32 + EPS), abs=1e-12)
    assert got["ciou"] == pytest.approx(got["diou"], abs=1e-12)  # both square: v = 0


def test_disjoint_boxes() -> None:
    # [0,0,1,1] and [2,0,3,1]: IoU 0, union 2, enclosing [0,0,3,1] area 3
    got = {k: per_box(k, [[0, 0, 1, 1]], [[2, 0, 3, 1]]).item() for k in KINDS}
    assert got["iou"] == 1.0
    assert got["giou"] == pytest.approx(1 + (3 - 2) / (3 + EPS), abs=1e-12)
    assert got["diou"] == pytest.approx(1 + 4 / (9 + 1 + EPS), abs=1e-12)  # centres 2 apart, diag^2 = 10


def test_touching_boxes() -> None:
    # share the edge x = 1: intersection 0, enclosing area = union = 2, so GIoU loss is exactly 1
    got = {k: per_box(k, [[0, 0, 1, 1]], [[1, 0, 2, 1]]).item() for k in KINDS}
    assert got["iou"] == 1.0
    assert got["giou"] == pytest.approx(1.0, abs=1e-12)
    assert got["diou"] == pytest.approx(1 + 1 / (4 + 1 + EPS), abs=1e-12)


def test_nested_boxes_gradients() -> None:
    # pred [0,0,4,4] encloses target [1,1,2,2]: the enclosing box is pred = the union, so the
    # GIoU penalty (C - U) / C is 0 and stays 0 when pred moves; loss = 1 - 1 / (16 + eps).
    # d/d pred corner: inter / (U + eps)^2 * side = 4 / (16 + eps)^2 (outwards);
    # d/d target corner: -1 / (U + eps) * side = -1 / (16 + eps) (outwards), U fixed
    pred = torch.tensor([[0.0, 0.0, 4.0, 4.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[1.0, 1.0, 2.0, 2.0]], dtype=torch.float64, requires_grad=True)
    for kind in ("iou", "giou"):
        value = losskit.build("bbox", iou_loss=kind, l1_weight=0.0)(pred, target)
        gp, gt = torch.autograd.grad(value, (pred, target))
        outwards = torch.tensor([[-1.0, -1.0, 1.0, 1.0]], dtype=torch.float64)
        torch.testing.assert_close(gp, outwards * 4 / (16 + EPS) ** 2, rtol=1e-12, atol=0.0)
        torch.testing.assert_close(gt, -outwards / (16 + EPS), rtol=1e-12, atol=0.0)


def test_disjoint_boxes_iou_gradient_is_zero() -> None:
    # no overlap: 1 - IoU is flat at 1; GIoU still pulls pred towards target (the gap closes)
    pred = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[2.0, 0.0, 3.0, 1.0]], dtype=torch.float64)
    (g_iou,) = torch.autograd.grad(losskit.build("bbox", iou_loss="iou", l1_weight=0.0)(pred, target), pred)
    assert torch.equal(g_iou, torch.zeros_like(g_iou))
    # GIoU loss = 1 + (C - U) / (C + eps), U = 2, C = 3 (enclosing [0,0,3,1]). Pred's x2 moves U only
    # (dU/dx2 = 1): -1 / (C + eps). Pred's x1 moves both (dC/dx1 = dU/dx1 = -1): (C - U) / (C + eps)^2
    (g_giou,) = torch.autograd.grad(losskit.build("bbox", l1_weight=0.0)(pred, target), pred)
    want = torch.tensor([1 / (3 + EPS) ** 2, -1 / (3 + EPS)], dtype=torch.float64)
    torch.testing.assert_close(g_giou[0, [0, 2]], want, rtol=1e-12, atol=0.0)


def test_zero_area_boxes_against_other_boxes() -> None:
    # a zero-width line through the middle of the unit square: no intersection, union 1 and
    # enclosing box 1, same centre; aspect: atan(0 / 1) = 0 against pi/4, so v = 1/4
    line, square = [[0.5, 0.0, 0.5, 1.0]], [[0.0, 0.0, 1.0, 1.0]]
    got = {k: per_box(k, line, square).item() for k in KINDS}
    assert got["iou"] == 1.0
    assert got["giou"] == pytest.approx(1.0, abs=1e-12)
    assert got["diou"] == pytest.approx(1.0, abs=1e-12)
    assert got["ciou"] == pytest.approx(1.0 + 0.25 * 0.25 / (1.25 + EPS), abs=1e-12)
    # a point at (2, 0.5) against the unit square: enclosing box [0,0,2,1] (area 2, diagonal^2 5),
    # centres 1.5 apart; a point counts as square, so CIoU adds nothing to DIoU
    point = [[2.0, 0.5, 2.0, 0.5]]
    got = {k: per_box(k, point, square).item() for k in KINDS}
    assert got["iou"] == 1.0
    assert got["giou"] == pytest.approx(1.0 + (2 - 1) / (2 + EPS), abs=1e-12)
    assert got["diou"] == pytest.approx(1.0 + 2.25 / (5 + EPS), abs=1e-12)
    assert got["ciou"] == pytest.approx(got["diou"], abs=1e-12)


def test_partial_overlap_aspect_term() -> None:
    # pred [0,0,2,1] (2:1), target [0,0,1,1] (square): IoU 1/2, v = 4/pi^2 (pi/4 - atan 2)^2
    iou = 1 / (2 + EPS)
    v = 4 / math.pi**2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    alpha = v / (1 - iou + v + EPS)
    diou = 1 - iou + 0.25 / (4 + 1 + EPS)  # centres (1, .5) and (.5, .5); enclosing [0,0,2,1]
    assert per_box("diou", [[0, 0, 2, 1]], [[0, 0, 1, 1]]).item() == pytest.approx(diou, abs=1e-12)
    assert per_box("ciou", [[0, 0, 2, 1]], [[0, 0, 1, 1]]).item() == pytest.approx(diou + alpha * v, abs=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "box",
    [[0.2, 0.3, 0.7, 0.9], [0.5, 0.5, 0.5, 0.5], [0.1, 0.2, 0.1, 0.8], [0.1, 0.2, 0.9, 0.2]],
    ids=["box", "point", "zero-width", "zero-height"],
)
def test_identical_boxes_give_zero_loss_and_gradient(kind: str, box: list[float]) -> None:
    pred = torch.tensor([box], requires_grad=True)
    loss = losskit.build("bbox", iou_loss=kind, l1_weight=1.0)
    value = loss(pred, torch.tensor([box]))
    assert value.item() == 0.0
    (grad,) = torch.autograd.grad(value, pred)
    assert torch.equal(grad, torch.zeros_like(grad))


def test_empty_box_against_itself_where_torchvision_gives_one() -> None:
    empty = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.2, 0.1, 0.2, 0.9]])
    assert torch.equal(generalized_box_iou_loss(empty, empty), torch.ones(2))  # the shortfall
    out = losskit.build("bbox", l1_weight=0.0, reduction="none").compute(empty, empty)
    assert torch.equal(out.loss, torch.zeros(2))
    assert out.metrics["mean_iou"].item() == 1.0


def test_ciou_passes_eps_everywhere_where_torchvision_drops_it(ref) -> None:
    pred = torch.tensor([[0.0, 0.0, 2e-3, 1e-3]], dtype=torch.float64)  # tiny boxes: eps matters
    target = torch.tensor([[0.0, 0.0, 1e-3, 1e-3]], dtype=torch.float64)
    eps = 1e-2
    ours = losskit.build("bbox", iou_loss="ciou", l1_weight=0.0, eps=eps, reduction="none")(pred, target)
    want, _, _ = ref.bbox(pred, target, iou_loss="ciou", l1_weight=0.0, eps=eps, reduction="none")
    torch.testing.assert_close(ours, want, rtol=1e-12, atol=1e-15)
    # torchvision's value is computed with IoU and distance at eps=1e-7 (only alpha sees eps)
    tv = complete_box_iou_loss(pred, target, eps=eps)
    assert abs(tv.item() - ours.item()) > 1e-3


@pytest.mark.parametrize("degenerate", ["raise", "clamp"])
def test_ciou_at_zero_height_is_finite_where_torchvision_gives_nan(degenerate: str, ref) -> None:
    # pred has zero height (valid: y1 == y2): atan(w / 0) has a NaN gradient in torchvision
    pred = torch.tensor([[0.1, 0.4, 0.6, 0.4], [0.3, 0.3, 0.3, 0.3]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[0.2, 0.2, 0.5, 0.7], [0.1, 0.1, 0.5, 0.2]], dtype=torch.float64)
    tv_grad = torch.autograd.grad(complete_box_iou_loss(pred, target, reduction="sum"), pred)[0]
    assert torch.isnan(tv_grad).any()  # the shortfall
    loss = losskit.build("bbox", iou_loss="ciou", l1_weight=0.0, degenerate=degenerate, reduction="sum")
    value = loss(pred, target)
    (grad,) = torch.autograd.grad(value, pred)
    assert torch.isfinite(grad).all()
    p2 = pred.detach().clone().requires_grad_(True)
    want, _, _ = ref.bbox(p2, target, iou_loss="ciou", l1_weight=0.0, reduction="sum")
    torch.testing.assert_close(value, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, torch.autograd.grad(want, p2)[0], rtol=1e-9, atol=1e-9)


def test_fp16_inputs_compute_in_fp32_and_gradients_saturate() -> None:
    # zero-width boxes on one vertical line: union = enclosing area = 0, so the exact
    # gradient is h / eps ~ 1e7, beyond fp16's range (65504)
    pred16 = torch.tensor([[0.25, 0.0, 0.25, 1.0], [0.1, 0.2, 0.6, 0.7]], dtype=torch.float16, requires_grad=True)
    target16 = torch.tensor([[0.25, 0.0, 0.25, 0.5], [0.3, 0.1, 0.5, 0.9]], dtype=torch.float16)
    loss = losskit.build("bbox", l1_weight=0.0)
    value = loss(pred16, target16)
    assert value.dtype == torch.float32
    pred32 = pred16.detach().float().requires_grad_(True)
    value32 = loss(pred32, target16.float())
    torch.testing.assert_close(value, value32)
    (g16,) = torch.autograd.grad(value, pred16)
    (g32,) = torch.autograd.grad(value32, pred32)
    assert g16.dtype == torch.float16
    assert torch.isfinite(g16).all()
    assert g32.abs().max() > 65504  # would be inf in fp16 without saturation
    big = torch.finfo(torch.float16).max
    torch.testing.assert_close(g16.float(), g32.clamp(-big, big).half().float())
    # torchvision: the same gradient cast to fp16 overflows
    p_tv = pred16.detach().clone().requires_grad_(True)
    (g_tv,) = torch.autograd.grad(generalized_box_iou_loss(p_tv, target16, reduction="mean"), p_tv)
    assert not torch.isfinite(g_tv).all()


def test_bf16_inputs_give_fp32_result() -> None:
    pred = torch.tensor([[0.1, 0.2, 0.6, 0.7]], dtype=torch.bfloat16)
    target = torch.tensor([[0.3, 0.1, 0.5, 0.9]], dtype=torch.bfloat16)
    value = losskit.build("bbox", iou_loss="ciou")(pred, target)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, losskit.build("bbox", iou_loss="ciou")(pred.float(), target.float()))


def test_parts_and_metric() -> None:
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    target = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0]])
    out = losskit.build("bbox", l1_weight=3.0, iou_weight=2.0).compute(pred, target)
    torch.testing.assert_close(out.parts["l1"], torch.tensor(4.0 / 2))  # |diffs| = 4 on box 0, 0 on box 1
    torch.testing.assert_close(out.loss, 3.0 * out.parts["l1"] + 2.0 * out.parts["giou"])
    torch.testing.assert_close(out.metrics["mean_iou"], torch.tensor((1 / 7 + 1) / 2), rtol=1e-6, atol=1e-6)
    assert not out.metrics["mean_iou"].requires_grad


def test_iou_weight_zero_skips_the_term_but_keeps_the_metric() -> None:
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    target = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    out = losskit.build("bbox", iou_weight=0.0).compute(pred, target)
    assert set(out.parts) == {"l1"}
    torch.testing.assert_close(out.metrics["mean_iou"], torch.tensor(1 / 7), rtol=1e-6, atol=1e-6)


def test_config_changes_apply_at_call_time() -> None:
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    target = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    loss = losskit.build("bbox")
    before = loss.compute(pred, target)
    loss.config.iou_weight = 0.5  # e.g. a curriculum
    after = loss(pred, target)
    torch.testing.assert_close(after, before.parts["l1"] + 0.5 * before.parts["giou"])
