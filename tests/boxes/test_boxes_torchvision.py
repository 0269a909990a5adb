"""``bbox`` against torchvision.ops and DETR's SetCriterion recipe, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import (
    box_convert,
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou,
    generalized_box_iou_loss,
)

import losskit
from losskit.testing import check_loss

TV = {"giou": generalized_box_iou_loss, "diou": distance_box_iou_loss, "ciou": complete_box_iou_loss}


def random_xyxy(n: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Valid, non-degenerate xyxy boxes [n, 4] in [0, 1.5]."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64)
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 0.5 + 0.01
    return torch.cat((xy, xy + wh), 1).to(dtype)


def grads(fn, pred: torch.Tensor, target: torch.Tensor, upstream: torch.Tensor):
    p = pred.detach().clone().requires_grad_(True)
    t = target.detach().clone().requires_grad_(True)
    value = fn(p, t)
    gp, gt = torch.autograd.grad((value * upstream).sum(), (p, t))
    return value.detach(), gp, gt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_matches_torchvision_values_and_gradients(kind: str, dtype: torch.dtype) -> None:
    pred, target = random_xyxy(512, 1, dtype), random_xyxy(512, 2, dtype)
    upstream = torch.randn(512, generator=torch.Generator().manual_seed(3), dtype=dtype)
    ours = losskit.build("bbox", l1_weight=0.0, iou_loss=kind, reduction="none")
    v1, gp1, gt1 = grads(ours, pred, target, upstream)
    v2, gp2, gt2 = grads(TV[kind], pred, target, upstream)
    tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(v1, v2, **tol)
    torch.testing.assert_close(gp1, gp2, **tol)
    torch.testing.assert_close(gt1, gt2, **tol)


@pytest.mark.parametrize("fmt", ["xywh", "cxcywh"])
def test_box_formats_convert_like_torchvision(fmt: str) -> None:
    xyxy_p, xyxy_t = random_xyxy(64, 4), random_xyxy(64, 5)
    pred, target = box_convert(xyxy_p, "xyxy", fmt), box_convert(xyxy_t, "xyxy", fmt)
    ours = losskit.build("bbox", box_format=fmt, l1_weight=0.0, reduction="none")
    want = generalized_box_iou_loss(box_convert(pred, fmt, "xyxy"), box_convert(target, fmt, "xyxy"))
    torch.testing.assert_close(ours(pred, target), want, rtol=1e-6, atol=1e-6)


def detr_box_losses(outputs: torch.Tensor, targets: torch.Tensor, num_boxes: float) -> dict[str, torch.Tensor]:
    """DETR's ``SetCriterion.loss_boxes`` (facebookresearch/detr, models/detr.py) on matched boxes."""
    loss_bbox = F.l1_loss(outputs, targets, reduction="none")
    loss_giou = 1 - torch.diag(
        generalized_box_iou(box_convert(outputs, "cxcywh", "xyxy"), box_convert(targets, "cxcywh", "xyxy"))
    )
    return {"loss_bbox": loss_bbox.sum() / num_boxes, "loss_giou": loss_giou.sum() / num_boxes}


@pytest.mark.parametrize("num_boxes", [0.0, 7.0, 37.5])
def test_detr_preset_is_detr_set_criterion(num_boxes: float) -> None:
    xyxy_p, xyxy_t = random_xyxy(20, 6), random_xyxy(20, 7)
    pred = box_convert(xyxy_p, "xyxy", "cxcywh").requires_grad_(True)
    target = box_convert(xyxy_t, "xyxy", "cxcywh")
    out = losskit.build("bbox", preset="detr").compute(pred, target, num_boxes=num_boxes)
    ref = detr_box_losses(pred, target, max(num_boxes, 1.0))
    torch.testing.assert_close(out.parts["l1"], ref["loss_bbox"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.parts["giou"], ref["loss_giou"], rtol=1e-6, atol=1e-6)
    want = 5 * ref["loss_bbox"] + 2 * ref["loss_giou"]
    torch.testing.assert_close(out.loss, want, rtol=1e-6, atol=1e-6)
    g1 = torch.autograd.grad(out.loss, pred)[0]
    g2 = torch.autograd.grad(want, pred)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6)


def test_num_boxes_tensor_is_clamped_without_sync() -> None:
    pred, target = random_xyxy(8, 8), random_xyxy(8, 9)
    loss = losskit.build("bbox")
    by_tensor = loss(pred, target, num_boxes=torch.tensor(0.25))
    by_sum = losskit.build("bbox", reduction="sum")(pred, target)
    torch.testing.assert_close(by_tensor, by_sum)  # clamped to 1
    torch.testing.assert_close(loss(pred, target, num_boxes=torch.tensor([4])), by_sum / 4)


@pytest.mark.parametrize(
    "config",
    [{}, {"preset": "detr"}, {"iou_loss": "diou", "box_format": "xywh"}, {"iou_loss": "iou", "degenerate": "clamp"},
     {"smooth_l1_beta": 0.1, "iou_loss": "none"}],
)
def test_conformance_kit(config: dict) -> None:
    check_loss("bbox", config=config)


def test_ciou_conformance_except_gradcheck() -> None:
    # CIoU's alpha is held constant in the backward (torchvision and the paper), so the
    # analytic gradient is by design not the finite difference; everything else holds.
    checks = ["config", "bad_config", "finite", "reduction", "low_precision"]
    check_loss("bbox", config={"iou_loss": "ciou"}, checks=checks)


@pytest.mark.parametrize("scale", [1.0, 1e-4], ids=["unit", "tiny"])  # tiny: areas near eps
@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_bit_identical_to_torchvision_including_ties(kind: str, scale: float) -> None:
    # the fused backward repeats autograd's arithmetic on torchvision's graph; shared
    # edges (ties in max/min, where the gradient splits in halves) included
    pred, target = random_xyxy(3000, 10) * scale, random_xyxy(3000, 11) * scale
    pred[:500, 0], pred[:500, 2] = target[:500, 0], target[:500, 2]  # same left and right edges
    pred[500:1000, 1] = target[500:1000, 1]  # same top edge
    pred[500:1000, 3] = torch.maximum(pred[500:1000, 3], pred[500:1000, 1] + 0.01 * scale)  # keep a height
    upstream = torch.randn(3000, generator=torch.Generator().manual_seed(12))
    ours = losskit.build("bbox", l1_weight=0.0, iou_loss=kind, reduction="none")
    v1, gp1, gt1 = grads(ours, pred, target, upstream)
    v2, gp2, gt2 = grads(TV[kind], pred, target, upstream)
    assert torch.equal(v1, v2)
    assert torch.equal(gp1, gp2)
    assert torch.equal(gt1, gt2)


@pytest.mark.parametrize(
    ("baseline", "config"), [("torchvision_giou", {"l1_weight": 0.0}), ("torchvision_giou_l1", {})]
)
def test_registered_baselines_compute_the_same_loss(baseline: str, config: dict) -> None:
    # `losskit bench` times these against bbox with the matching config
    spec = losskit.get_spec("bbox")
    inputs = spec.example_inputs(
        spec.sizes["small"], dtype=torch.float32, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0)
    )
    ours = losskit.build("bbox", **config)(*inputs.args, **inputs.kwargs)
    torch.testing.assert_close(ours, spec.baselines[baseline](*inputs.args, **inputs.kwargs), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
def test_example_inputs_are_valid_boxes_in_every_format(fmt: str) -> None:
    spec = losskit.get_spec("bbox")
    assert spec.sizes["large"] == {"N": 1_000_000}
    for seed in range(3):
        pred, target = spec.example_inputs(
            spec.sizes["tiny"], dtype=torch.float16, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed)
        ).args
        assert pred.requires_grad and not target.requires_grad
        for boxes in (pred, target):
            xyxy = box_convert(boxes.detach().float(), fmt, "xyxy")
            assert (xyxy[:, 2:] - xyxy[:, :2] >= 0.04).all()  # sides well above zero, even in fp16


def test_torch_func_grad_equals_autograd() -> None:
    pred, target = random_xyxy(16, 13), random_xyxy(16, 14)
    loss = losskit.build("bbox", iou_loss="diou")
    by_func = torch.func.grad(lambda p: loss(p, target))(pred)
    p = pred.clone().requires_grad_(True)
    (by_autograd,) = torch.autograd.grad(loss(p, target), p)
    assert torch.equal(by_func, by_autograd)
