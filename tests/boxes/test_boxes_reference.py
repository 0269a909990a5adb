"""``bbox`` against the brute-force float64 reference (conftest.py), values and gradients.

Hypothesis draws the number of boxes, the config and boxes from a coarse grid mixed
with arbitrary floats, so ties, touching, nested, identical and zero-area boxes (and,
under ``degenerate: clamp``, inverted ones) come up often.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchvision.ops import box_convert

import losskit

# Floats rounded to 1e-6: differences far below that (say 1e-135) make gradients of
# 1e134 whose cancellation then depends on summation order, in the reference too.
GRID = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0])
COORD = st.one_of(GRID, st.floats(-3.0, 3.0, allow_nan=False).map(lambda v: round(v, 6)))
SIDE = st.one_of(st.sampled_from([0.0, 0.25, 1.0]), st.floats(0.0, 3.0).map(lambda v: round(v, 6)))


@st.composite
def box_pairs(draw: st.DrawFn, *, inverted: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """xyxy pred/target ``[N, 4]``, N in [0, 5]; target often shares coordinates with pred."""
    n = draw(st.integers(0, 5))
    rows_p, rows_t = [], []
    for _ in range(n):
        sides = st.floats(-2.0, 3.0).map(lambda v: round(v, 6)) if inverted else SIDE
        x, y, w, h = draw(COORD), draw(COORD), draw(sides), draw(sides)
        p = [x, y, x + w, y + h]
        relation = draw(st.sampled_from(["free", "identical", "shares"]))
        if relation == "identical":
            t = list(p)
        else:
            gx, gy, gw, gh = draw(COORD), draw(COORD), draw(sides), draw(sides)
            t = [gx, gy, gx + gw, gy + gh]
            if relation == "shares":
                for j in draw(st.sets(st.integers(0, 3), min_size=1, max_size=3)):
                    t[j] = p[j]
                if not inverted:  # keep target ordered
                    t = [min(t[0], t[2]), min(t[1], t[3]), max(t[0], t[2]), max(t[1], t[3])]
        rows_p.append(p)
        rows_t.append(t)
    shape = (n, 4)
    pred = torch.tensor(rows_p, dtype=torch.float64).reshape(shape)
    target = torch.tensor(rows_t, dtype=torch.float64).reshape(shape)
    return pred, target


CONFIGS = st.fixed_dictionaries(
    {
        "iou_loss": st.sampled_from(["iou", "giou", "diou", "ciou"]),
        "l1_weight": st.sampled_from([0.0, 1.0, 5.0]),
        "smooth_l1_beta": st.sampled_from([0.0, 0.5]),
        "iou_weight": st.sampled_from([1.0, 2.0]),
        "eps": st.sampled_from([1e-7, 1e-3]),
        "reduction": st.sampled_from(["mean", "sum", "none"]),
    }
)


def compare(pred: torch.Tensor, target: torch.Tensor, config: dict, ref, **call) -> None:
    p1, t1 = pred.clone().requires_grad_(True), target.clone().requires_grad_(True)
    out = losskit.build("bbox", **config).compute(p1, t1, **call)
    p2, t2 = pred.clone().requires_grad_(True), target.clone().requires_grad_(True)
    want, parts, mean_iou = ref.bbox(p2, t2, **config, **call)
    assert out.loss.dtype == torch.float64
    torch.testing.assert_close(out.loss, want, rtol=1e-9, atol=1e-12)
    assert set(out.parts) == set(parts)
    for name, value in parts.items():
        torch.testing.assert_close(out.parts[name], value, rtol=1e-9, atol=1e-12)
    assert abs(float(out.metrics["mean_iou"]) - mean_iou) < 1e-9
    upstream = torch.linspace(0.5, 1.5, out.loss.numel(), dtype=torch.float64).reshape(out.loss.shape)
    if pred.shape[0] == 0:
        (g,) = torch.autograd.grad((out.loss * upstream).sum(), p1)
        assert g.shape == (0, 4)
        return
    g1 = torch.autograd.grad((out.loss * upstream).sum(), (p1, t1))
    if want.requires_grad:
        g2 = torch.autograd.grad((want * upstream).sum(), (p2, t2), allow_unused=True)
    else:  # every box identical: the reference is a constant
        g2 = (None, None)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b if b is not None else torch.zeros_like(a), rtol=1e-7, atol=1e-6)


@given(pairs=box_pairs(inverted=False), config=CONFIGS)
def test_matches_reference_on_valid_boxes(pairs, config, ref) -> None:
    compare(*pairs, config, ref)


@given(pairs=box_pairs(inverted=True), config=CONFIGS)
def test_matches_reference_under_clamp(pairs, config, ref) -> None:
    compare(*pairs, {**config, "degenerate": "clamp"}, ref)


@given(
    pairs=box_pairs(inverted=False),
    fmt=st.sampled_from(["xywh", "cxcywh"]),
    data=st.data(),
)
def test_matches_reference_with_weights_formats_and_num_boxes(pairs, fmt, data, ref) -> None:
    pred, target = (box_convert(b, "xyxy", fmt) for b in pairs)
    n = pred.shape[0]
    weights = torch.tensor(data.draw(st.lists(st.floats(0.0, 2.0), min_size=n, max_size=n)), dtype=torch.float64)
    num_boxes = data.draw(st.sampled_from([0.0, 3.0, 10.5]))
    config = {"box_format": fmt, "iou_loss": data.draw(st.sampled_from(["giou", "ciou"])), "l1_weight": 5.0}
    compare(pred, target, config, ref, weights=weights, num_boxes=num_boxes)


@pytest.mark.parametrize("fmt", ["xyxy", "cxcywh"])
@pytest.mark.parametrize("kind", ["iou", "giou", "diou"])  # CIoU holds alpha constant: not a true gradient
def test_gradcheck_wrt_pred_target_and_weights(kind: str, fmt: str) -> None:
    g = torch.Generator().manual_seed(5)
    xy = torch.rand(6, 2, generator=g, dtype=torch.float64)
    wh = torch.rand(6, 2, generator=g, dtype=torch.float64) + 0.1
    pred = torch.cat((xy, xy + wh), 1)
    target = pred + 0.3 * torch.randn(6, 4, generator=g, dtype=torch.float64)
    target[:, 2:] = torch.maximum(target[:, 2:], target[:, :2] + 0.05)  # valid, overlapping or not
    pred, target = (box_convert(b, "xyxy", fmt).requires_grad_(True) for b in (pred, target))
    weights = torch.rand(6, generator=g, dtype=torch.float64).requires_grad_(True)
    loss = losskit.build("bbox", iou_loss=kind, box_format=fmt, smooth_l1_beta=0.2)
    assert torch.autograd.gradcheck(lambda p, t, w: loss(p, t, weights=w, num_boxes=4.0), (pred, target, weights))
