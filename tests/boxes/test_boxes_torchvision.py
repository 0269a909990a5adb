"""``bbox`` against torchvision.ops and DETR's SetCriterion recipe, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import (
    box_convert,
    box_iou,
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


def jittered(boxes: torch.Tensor, seed: int) -> torch.Tensor:
    """Valid xyxy boxes near ``boxes`` (corners moved by ~0.05): most pairs overlap, some do not."""
    g = torch.Generator().manual_seed(seed)
    moved = boxes.double() + 0.05 * torch.randn(boxes.shape, generator=g, dtype=torch.float64)
    moved[:, 2:] = torch.maximum(moved[:, 2:], moved[:, :2] + 0.005)
    return moved.to(boxes.dtype)


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


def torchvision_bbox(kind: str, fmt: str, beta: float, l1_weight: float, iou_weight: float):
    """``bbox``'s per-box loss from torch and torchvision: smooth L1 / L1 in ``fmt`` + the torchvision IoU loss."""

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if beta > 0:
            coords = F.smooth_l1_loss(pred, target, beta=beta, reduction="none")
        else:
            coords = F.l1_loss(pred, target, reduction="none")
        p, t = box_convert(pred, fmt, "xyxy"), box_convert(target, fmt, "xyxy")
        # box_iou divides by the bare union: bbox runs with a negligible eps for this kind
        iou_term = 1 - torch.diag(box_iou(p, t)) if kind == "iou" else TV[kind](p, t)
        return l1_weight * coords.sum(1) + iou_weight * iou_term

    return loss


@pytest.mark.parametrize("beta", [0.0, 0.05], ids=["l1", "smooth_l1"])
@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
def test_every_format_and_term_matches_torch_and_torchvision(fmt: str, kind: str, beta: float) -> None:
    # fp32, values and gradients of pred and target at 1e-6, the coordinate term included
    xyxy = random_xyxy(256, 15)
    pred, target = box_convert(xyxy, "xyxy", fmt), box_convert(jittered(xyxy, 16), "xyxy", fmt)
    upstream = torch.randn(256, generator=torch.Generator().manual_seed(17))
    eps = 1e-12 if kind == "iou" else 1e-7
    config = {"box_format": fmt, "iou_loss": kind, "l1_weight": 5.0, "smooth_l1_beta": beta, "iou_weight": 2.0}
    ours = losskit.build("bbox", **config, eps=eps, reduction="none")
    v1, gp1, gt1 = grads(ours, pred, target, upstream)
    v2, gp2, gt2 = grads(torchvision_bbox(kind, fmt, beta, 5.0, 2.0), pred, target, upstream)
    for a, b in ((v1, v2), (gp1, gp2), (gt1, gt2)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fmt", ["xyxy", "cxcywh"])
def test_mean_iou_metric_is_torchvision_box_iou(fmt: str) -> None:
    xyxy = random_xyxy(128, 18)
    pred, target = box_convert(xyxy, "xyxy", fmt), box_convert(jittered(xyxy, 19), "xyxy", fmt)
    out = losskit.build("bbox", box_format=fmt, eps=1e-12).compute(pred, target)  # box_iou has no eps
    want = torch.diag(box_iou(box_convert(pred, fmt, "xyxy"), box_convert(target, fmt, "xyxy"))).mean()
    assert want > 0.3  # the boxes overlap: the metric is not trivially 0
    torch.testing.assert_close(out.metrics["mean_iou"], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("reduction", "num_boxes", "normaliser"),
    [("none", None, None), ("sum", None, 1.0), ("mean", None, 50.0), ("mean", 3.5, 3.5),
     ("mean", torch.tensor([0.25]), 1.0), ("mean", torch.tensor(80.0), 80.0)],
    ids=["none", "sum", "mean-by-N", "mean-by-num_boxes", "num_boxes-tensor-clamped", "num_boxes-tensor"],
)
def test_weights_num_boxes_and_reductions_against_torchvision(reduction: str, num_boxes, normaliser) -> None:
    # weights multiply each box's loss; the normaliser is N or num_boxes (clamped to >= 1), never
    # the sum of the weights; every part is reduced the same way
    pred = random_xyxy(50, 20)
    target = jittered(pred, 21)
    weights = torch.rand(50, generator=torch.Generator().manual_seed(22), dtype=torch.float64).float() * 2
    weights[:5] = 0.0
    config = {"iou_loss": "diou", "l1_weight": 3.0, "smooth_l1_beta": 0.1, "iou_weight": 2.0}
    p1, w1 = pred.clone().requires_grad_(True), weights.clone().requires_grad_(True)
    out = losskit.build("bbox", **config, reduction=reduction).compute(p1, target, weights=w1, num_boxes=num_boxes)
    p2, w2 = pred.clone().requires_grad_(True), weights.clone().requires_grad_(True)
    l1 = F.smooth_l1_loss(p2, target, beta=0.1, reduction="none").sum(1) * w2
    diou = distance_box_iou_loss(p2, target) * w2

    def reduce(v: torch.Tensor) -> torch.Tensor:
        return v if reduction == "none" else v.sum() / normaliser

    want = {"l1": reduce(l1), "diou": reduce(diou)}
    total = 3.0 * want["l1"] + 2.0 * want["diou"]
    assert out.loss.shape == ((50,) if reduction == "none" else ())
    assert set(out.parts) == set(want)
    for name, value in want.items():
        torch.testing.assert_close(out.parts[name], value, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.loss, total, rtol=1e-6, atol=1e-6)
    if reduction == "none":
        assert torch.equal(out.loss.detach()[:5], torch.zeros(5))  # weight 0: loss 0
    upstream = torch.linspace(0.5, 1.5, out.loss.numel()).reshape(out.loss.shape)
    g1 = torch.autograd.grad((out.loss * upstream).sum(), (p1, w1))
    g2 = torch.autograd.grad((total * upstream).sum(), (p2, w2))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def detr_box_losses(outputs: torch.Tensor, targets: torch.Tensor, num_boxes: float) -> dict[str, torch.Tensor]:
    """DETR's ``SetCriterion.loss_boxes`` (facebookresearch/detr, models/detr.py) on matched boxes."""
    loss_bbox = F.l1_loss(outputs, targets, reduction="none")
    loss_giou = 1 - torch.diag(
        generalized_box_iou(box_convert(outputs, "cxcywh", "xyxy"), box_convert(targets, "cxcywh", "xyxy"))
    )
    return {"loss_bbox": loss_bbox.sum() / num_boxes, "loss_giou": loss_giou.sum() / num_boxes}


@pytest.mark.parametrize(
    "num_boxes", [0.0, 7.0, 37.5, torch.tensor([12.0])], ids=["zero-clamped", "7", "37.5", "all-reduced-tensor"]
)
def test_detr_preset_is_detr_set_criterion(num_boxes) -> None:
    xyxy = random_xyxy(20, 6)
    pred = box_convert(xyxy, "xyxy", "cxcywh").requires_grad_(True)
    target = box_convert(jittered(xyxy, 7), "xyxy", "cxcywh")
    # DETR's generalized_box_iou has no eps; bbox's default (torchvision's 1e-7) moves gradients by ~eps / area
    out = losskit.build("bbox", preset="detr", eps=1e-12).compute(pred, target, num_boxes=num_boxes)
    # DETR: num_boxes = clamp(all_reduce(num_boxes) / world_size, min=1)
    normaliser = torch.clamp(torch.as_tensor(num_boxes, dtype=torch.float32).reshape(()), min=1).item()
    ref = detr_box_losses(pred, target, normaliser)
    want = 5 * ref["loss_bbox"] + 2 * ref["loss_giou"]
    torch.testing.assert_close(out.parts["l1"], ref["loss_bbox"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.parts["giou"], ref["loss_giou"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.loss, want, rtol=1e-6, atol=1e-6)
    default = losskit.build("bbox", preset="detr")(pred, target, num_boxes=num_boxes)
    torch.testing.assert_close(default, want, rtol=1e-6, atol=1e-6)  # the value barely feels eps
    g1 = torch.autograd.grad(out.loss, pred)[0]
    g2 = torch.autograd.grad(want, pred)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-6, atol=1e-6)


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 1e-4], ids=["unit", "tiny"])  # tiny: areas near eps
@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_bit_identical_to_torchvision_including_ties(kind: str, scale: float, dtype: torch.dtype) -> None:
    # the fused backward repeats autograd's arithmetic on torchvision's graph; shared
    # edges (ties in max/min, where the gradient splits in halves) included
    pred, target = random_xyxy(3000, 10, dtype) * scale, random_xyxy(3000, 11, dtype) * scale
    pred[:500, 0], pred[:500, 2] = target[:500, 0], target[:500, 2]  # same left and right edges
    pred[500:1000, 1] = target[500:1000, 1]  # same top edge
    pred[500:1000, 3] = torch.maximum(pred[500:1000, 3], pred[500:1000, 1] + 0.01 * scale)  # keep a height
    upstream = torch.randn(3000, generator=torch.Generator().manual_seed(12), dtype=dtype)
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
    inputs = spec.bench.example_inputs(
        spec.bench.sizes["small"], dtype=torch.float32, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0)
    )
    ours = losskit.build("bbox", **config)(*inputs.args, **inputs.kwargs)
    torch.testing.assert_close(ours, spec.bench.baselines[baseline](*inputs.args, **inputs.kwargs), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
def test_example_inputs_are_valid_boxes_in_every_format(fmt: str) -> None:
    spec = losskit.get_spec("bbox")
    assert spec.bench.sizes["large"] == {"N": 1_000_000}
    for seed in range(3):
        pred, target = spec.bench.example_inputs(
            spec.bench.sizes["tiny"], dtype=torch.float16, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed)
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
