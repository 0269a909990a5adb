"""Bad inputs and bad configs of ``bbox``: specific exceptions whose messages say what was expected."""

from __future__ import annotations


import pytest
import torch

import losskit
from losskit.errors import ConfigError

BOXES = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 2.0, 3.0], [1.0, 1.0, 1.5, 1.5]])


@pytest.mark.parametrize(
    ("pred", "target", "error", "match"),
    [
        (BOXES[:, :3], BOXES[:, :3], ValueError, r"pred: size 3 at dim 1 does not match the 4 box coordinates"),
        (BOXES, BOXES[:2], ValueError, r"target: size 2 at dim 0 does not match the number of boxes in pred \(3\)"),
        (BOXES[0], BOXES[0], ValueError, r"pred: expected a 2-D float tensor \[N, 4\], got shape \(4,\)"),
        (BOXES.long(), BOXES, TypeError, r"pred: expected a floating-point tensor, got dtype torch.int64"),
        (BOXES, BOXES.int(), TypeError, r"target: expected a floating-point tensor, got dtype torch.int32"),
        (BOXES.tolist(), BOXES, TypeError, r"pred: expected a torch.Tensor, got list"),
    ],
)
def test_bad_shapes_and_dtypes(pred, target, error, match: str) -> None:
    with pytest.raises(error, match=match):
        losskit.build("bbox")(pred, target)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("which", ["pred", "target"])
def test_non_finite_coordinates_name_the_box(bad: float, which: str) -> None:
    boxes = {"pred": BOXES.clone(), "target": BOXES.clone() + 0.1}
    boxes[which][2, 1] = bad
    with pytest.raises(ValueError, match=rf"{which}: expected finite values, got NaN or inf at index 2 \(1 row"):
        losskit.build("bbox", degenerate="clamp")(boxes["pred"], boxes["target"])


def test_non_finite_check_can_be_turned_off() -> None:
    pred = BOXES.clone()
    pred[0, 0] = float("nan")
    value = losskit.build("bbox", check_inputs="never", degenerate="clamp")(pred, BOXES)
    assert torch.isnan(value)  # the user asked for no check


@pytest.mark.parametrize(("flag", "mode"), [(True, "always"), (False, "never")])
def test_check_finite_is_a_deprecated_alias_of_check_inputs(flag: bool, mode: str) -> None:
    with pytest.warns(DeprecationWarning, match=rf"check_finite is deprecated; use check_inputs='{mode}'"):
        loss = losskit.build("bbox", check_finite=flag)
    assert loss.config.check_inputs == mode
    pred = BOXES.clone()
    pred[1, 2] = float("inf")
    if flag:
        with pytest.raises(ValueError, match=r"pred: expected finite values"):
            loss(pred, BOXES)
    else:
        assert not torch.isfinite(loss(pred, BOXES))


def test_check_finite_contradicting_check_inputs_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"check_finite=False contradicts check_inputs='always'"):
        losskit.build("bbox", check_finite=False, check_inputs="always")


def test_meta_tensors_run_without_reading_values() -> None:
    """Under check_inputs auto, a non-CPU device reads no value (no host sync on CUDA); meta has none."""
    pred = torch.empty(7, 4, device="meta", requires_grad=True)
    out = losskit.build("bbox", iou_loss="ciou", smooth_l1_beta=0.1).compute(pred, torch.empty(7, 4, device="meta"))
    assert out.loss.device.type == "meta" and out.loss.shape == ()
    out.loss.backward()
    assert pred.grad.shape == (7, 4)


def test_inputs_on_different_devices_name_both() -> None:
    with pytest.raises(ValueError, match=r"inputs must be on one device, got pred on cpu, target on meta"):
        losskit.build("bbox")(BOXES, BOXES.to("meta"))


@pytest.mark.parametrize(
    ("fmt", "box", "shown"),
    [
        ("xyxy", [2.0, 0.0, 1.0, 1.0], r"xyxy \[2.0, 0.0, 1.0, 1.0\]"),
        ("cxcywh", [0.5, 0.5, 1.0, -0.2], r"xyxy \(converted from cxcywh\) \[0.0, 0.6, 1.0, 0.4\]"),
        ("xywh", [0.0, 0.0, -1.0, 1.0], r"xyxy \(converted from xywh\) \[0.0, 0.0, -1.0, 1.0\]"),
    ],
)
def test_degenerate_boxes_raise_with_index(fmt: str, box: list[float], shown: str) -> None:
    pred = torch.tensor([[0.0, 0.0, 1.0, 1.0], box, box])
    target = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3)
    with pytest.raises(ValueError, match=rf"pred: degenerate box at index 1 \(2 in all\): {shown} has x2 < x1"):
        losskit.build("bbox", box_format=fmt)(pred, target)
    # under clamp the same boxes are fine (and give finite gradients)
    p = pred.clone().requires_grad_(True)
    value = losskit.build("bbox", box_format=fmt, degenerate="clamp")(p, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(p.grad).all()


def test_degenerate_target_is_named() -> None:
    target = BOXES.clone()
    target[0] = torch.tensor([0.0, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"target: degenerate box at index 0"):
        losskit.build("bbox")(BOXES, target)


def test_zero_area_boxes_are_not_degenerate() -> None:
    pred = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 1.0]])
    assert torch.isfinite(losskit.build("bbox")(pred, BOXES[:2]))


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        (torch.ones(2), ValueError, r"weights: size 2 at dim 0 does not match the number of boxes in pred \(3\)"),
        (torch.ones(3, 1), ValueError, r"weights: expected a 1-D float tensor \[N\], got shape \(3, 1\)"),
        (torch.ones(3, dtype=torch.long), TypeError, r"weights: expected a floating-point tensor"),
        (torch.tensor([1.0, float("nan"), 1.0]), ValueError, r"weights: expected finite values, got NaN or inf at index 1"),
    ],
)
def test_bad_weights(weights, error, match: str) -> None:
    with pytest.raises(error, match=match):
        losskit.build("bbox")(BOXES, BOXES, weights=weights)


@pytest.mark.parametrize(
    ("num_boxes", "error", "match"),
    [
        (-1, ValueError, r"num_boxes: expected a finite number >= 0, got -1"),
        (float("nan"), ValueError, r"num_boxes: expected a finite number >= 0, got nan"),
        (True, TypeError, r"num_boxes: expected a number or a one-element tensor, got bool"),
        ("3", TypeError, r"num_boxes: expected a number or a one-element tensor, got str"),
        (torch.ones(2), ValueError, r"num_boxes: expected a one-element real tensor, got shape \(2,\)"),
        (torch.tensor(float("nan")), ValueError, r"num_boxes: expected a finite value, got nan"),
        (torch.tensor([float("inf")]), ValueError, r"num_boxes: expected a finite value, got inf"),
    ],
)
def test_bad_num_boxes(num_boxes, error, match: str) -> None:
    with pytest.raises(error, match=match):
        losskit.build("bbox")(BOXES, BOXES, num_boxes=num_boxes)


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_num_boxes_needs_mean(reduction: str) -> None:
    with pytest.raises(ValueError, match=rf"num_boxes: only used by reduction='mean', got reduction='{reduction}'"):
        losskit.build("bbox", reduction=reduction)(BOXES, BOXES, num_boxes=4)


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"box_format": "yxyx"}, "box_format"),
        ({"iou_loss": "eiou"}, "iou_loss"),
        ({"eps": 0.0}, "eps"),
        ({"eps": 2.0}, "eps"),
        ({"l1_weight": -1.0}, "l1_weight"),
        ({"smooth_l1_beta": -0.1}, "smooth_l1_beta"),
        ({"degenerate": "ignore"}, "degenerate"),
        ({"preset": "yolo"}, "preset"),
        ({"l1_weight": 0.0, "iou_loss": "none"}, ""),
    ],
)
def test_bad_config_names_the_field(fields: dict, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        losskit.registry.resolve_config({"name": "bbox", **fields}, prefix="terms.box")
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"terms.box.{path}" if path else "terms.box")


def test_all_terms_off_message() -> None:
    with pytest.raises(ConfigError, match="every term is off"):
        losskit.build("bbox", l1_weight=0.0, iou_weight=0.0)
    loss = losskit.build("bbox", l1_weight=0.0)
    with pytest.raises(ConfigError, match="every term is off"):
        loss.config.iou_weight = 0.0


def test_detr_preset_fills_unset_fields_and_explicit_fields_win() -> None:
    cfg = losskit.build("bbox", preset="detr").config
    assert (cfg.box_format, cfg.l1_weight, cfg.iou_loss, cfg.iou_weight) == ("cxcywh", 5.0, "giou", 2.0)
    cfg = losskit.build({"name": "bbox", "preset": "detr", "iou_loss": "ciou", "l1_weight": 1.0}).config
    assert (cfg.box_format, cfg.l1_weight, cfg.iou_loss, cfg.iou_weight) == ("cxcywh", 1.0, "ciou", 2.0)
    again = type(cfg).model_validate_json(cfg.model_dump_json())
    assert again.model_dump() == cfg.model_dump()
