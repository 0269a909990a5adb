"""The fused Triton path of ``bbox`` against the PyTorch path and the float64 reference.

Run under Triton's CPU interpreter by ``test_boxes_triton.py`` (a subprocess with
``TRITON_INTERPRET=1`` set before the kernels are imported); not collected on its own
(the file name does not start with ``test_``). Shapes are small: the interpreter runs
each program in NumPy.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import box_convert

import losskit
from losskit.kernels import triton_interpreted

assert triton_interpreted(), "run with TRITON_INTERPRET=1 (test_boxes_triton.py does)"
assert os.environ.get("TRITON_INTERPRET") == "1"

COORD = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(-2.0, 2.0).map(lambda v: round(v, 4)))
SIDE = st.one_of(st.sampled_from([0.0, 0.5]), st.floats(-0.5, 2.0).map(lambda v: round(v, 4)))


@st.composite
def pairs(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """xyxy ``[N, 4]`` fp32 pairs, N in [0, 9]: ties, identical, zero-area and (some) inverted boxes."""
    n = draw(st.integers(0, 9))
    rows = []
    for _ in range(2 * n):
        x, y, w, h = draw(COORD), draw(COORD), draw(SIDE), draw(SIDE)
        rows.append([x, y, x + w, y + h])
    boxes = torch.tensor(rows, dtype=torch.float32).reshape(2, n, 4) if n else torch.zeros(2, 0, 4)
    pred, target = boxes[0].clone(), boxes[1].clone()
    for i in range(n):
        relation = draw(st.sampled_from(["free", "identical", "shares"]))
        if relation == "identical":
            target[i] = pred[i]
        elif relation == "shares":
            j = draw(st.integers(0, 3))
            target[i, j] = pred[i, j]
    return pred, target


def run(config: dict, pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None, **call):
    """(output, grads of pred, target, weights) of ``bbox`` with ``config`` under an uneven upstream gradient."""
    p, t = pred.clone().requires_grad_(True), target.clone().requires_grad_(True)
    w = None if weights is None else weights.clone().requires_grad_(True)
    out = losskit.build("bbox", **config).compute(p, t, weights=w, **call)
    upstream = torch.linspace(0.5, 1.5, out.loss.numel()).reshape(out.loss.shape) if out.loss.dim() else 1.0
    leaves = [x for x in (p, t, w) if x is not None]
    grads = torch.autograd.grad((out.loss * upstream).sum(), leaves) if out.loss.requires_grad else [None] * 3
    return out, list(grads)


def close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """Equal to rounding: relative 2e-5 (or one unit in the last place of a coarser dtype: fp16/bf16
    gradients), absolute the same share of the largest magnitude (cancellations)."""
    scale = max(1.0, float(b.detach().abs().max())) if b.numel() else 1.0
    tol = max(2e-5, torch.finfo(b.dtype).eps)
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * scale, msg=lambda m: f"{what}: {m}")


def same_as_torch(config: dict, pred: torch.Tensor, target: torch.Tensor, weights=None, **call) -> None:
    fused, g_fused = run({**config, "kernel": "triton"}, pred, target, weights, **call)
    plain, g_plain = run({**config, "kernel": "torch"}, pred, target, weights, **call)
    assert fused.loss.dtype == plain.loss.dtype == torch.float32
    close(fused.loss, plain.loss, "loss")
    assert set(fused.parts) == set(plain.parts)
    for name in plain.parts:
        close(fused.parts[name], plain.parts[name], f"parts[{name}]")
    close(fused.metrics["mean_iou"], plain.metrics["mean_iou"], "mean_iou")
    for a, b, name in zip(g_fused, g_plain, ("pred", "target", "weights")):
        if b is not None:
            assert a.dtype == b.dtype
            close(a, b, f"d {name}")


CONFIGS = st.fixed_dictionaries({
    "iou_loss": st.sampled_from(["none", "iou", "giou", "diou", "ciou"]),
    "l1_weight": st.sampled_from([0.0, 1.0, 5.0]),
    "smooth_l1_beta": st.sampled_from([0.0, 0.3]),
    "eps": st.sampled_from([1e-7, 1e-3]),
    "reduction": st.sampled_from(["mean", "sum", "none"]),
    "box_format": st.sampled_from(["xyxy", "xywh", "cxcywh"]),
}).filter(lambda c: c["l1_weight"] > 0 or c["iou_loss"] != "none")


@settings(max_examples=40)
@given(boxes=pairs(), config=CONFIGS, weighted=st.booleans(), clamp=st.booleans())
def test_matches_the_torch_path(boxes, config, weighted, clamp) -> None:
    """Under ``clamp``, and under ``raise`` with the checks off (inverted boxes computed as given)."""
    pred, target = (box_convert(b, "xyxy", config["box_format"]) for b in boxes)
    weights = torch.linspace(0.0, 2.0, pred.shape[0]) if weighted else None
    policy = {"degenerate": "clamp"} if clamp else {"degenerate": "raise", "check_inputs": "never"}
    same_as_torch({**config, **policy}, pred, target, weights)


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_inputs_and_num_boxes(kind: str, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(20, 2, generator=g)
    pred = torch.cat((xy, xy + torch.rand(20, 2, generator=g) + 0.05), 1).to(dtype)
    target = (pred.float() + 0.2 * torch.rand(20, 4, generator=g)).to(dtype)
    num_boxes = torch.tensor([7.0])
    same_as_torch({"iou_loss": kind, "preset": "detr", "box_format": "xyxy"}, pred, target, num_boxes=num_boxes)


def test_matches_the_float64_reference(ref) -> None:
    g = torch.Generator().manual_seed(4)
    xy = torch.rand(12, 2, generator=g, dtype=torch.float64)
    pred = torch.cat((xy, xy + torch.rand(12, 2, generator=g, dtype=torch.float64)), 1)
    target = pred + 0.3 * torch.rand(12, 4, generator=g, dtype=torch.float64)
    for kind in ("giou", "ciou"):
        out, (d_pred, _) = run({"iou_loss": kind, "kernel": "triton"}, pred.float(), target.float(), None)
        p = pred.clone().requires_grad_(True)
        want, _, _ = ref.bbox(p, target, iou_loss=kind)
        (d_want,) = torch.autograd.grad(want, p)
        torch.testing.assert_close(out.loss.double(), want, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(d_pred.double(), d_want, rtol=1e-5, atol=1e-6)


def test_empty_batch_is_a_connected_zero_and_an_empty_none() -> None:
    pred = torch.zeros(0, 4, requires_grad=True)
    total = losskit.build("bbox", kernel="triton")(pred, torch.zeros(0, 4))
    assert total.item() == 0.0 and total.requires_grad
    total.backward()
    assert pred.grad.shape == (0, 4)
    per_box = losskit.build("bbox", kernel="triton", reduction="none")(pred, torch.zeros(0, 4))
    assert per_box.shape == (0,)


def test_value_checks_still_run_on_cpu_tensors() -> None:
    pred = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, float("nan"), 1.0]])
    with pytest.raises(ValueError, match=r"pred: expected finite values, got NaN or inf at index 1"):
        losskit.build("bbox", kernel="triton")(pred, torch.ones(2, 4))
    inverted = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match=r"pred: degenerate box at index 1"):
        losskit.build("bbox", kernel="triton")(inverted, torch.ones(2, 4))


def test_wide_coordinates_fall_back_to_float64_like_the_torch_path() -> None:
    pred = torch.tensor([[0.0, 0.0, 3e19, 3e19]])
    target = torch.tensor([[1e19, 1e19, 4e19, 4e19]])
    fused, _ = run({"kernel": "triton", "l1_weight": 0.0}, pred, target, None)
    plain, _ = run({"kernel": "torch", "l1_weight": 0.0}, pred, target, None)
    assert torch.isfinite(fused.loss) and fused.loss == plain.loss


def test_per_box_gradient_read_in_place_when_expanded() -> None:
    """``loss(reduction='none').sum().backward()`` hands the kernel an expanded (stride 0) gradient."""
    g = torch.Generator().manual_seed(6)
    xy = torch.rand(9, 2, generator=g)
    pred = torch.cat((xy, xy + torch.rand(9, 2, generator=g)), 1)
    target = pred + 0.2 * torch.rand(9, 4, generator=g)
    grads = []
    for kernel in ("triton", "torch"):
        p = pred.clone().requires_grad_(True)
        losskit.build("bbox", kernel=kernel, reduction="none", iou_loss="diou")(p, target).sum().backward()
        grads.append(p.grad)
    close(*grads, "d pred")
