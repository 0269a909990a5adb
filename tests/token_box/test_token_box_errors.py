"""Bad inputs and edge cases of ``token_box``: each error names the argument and what was expected."""

from __future__ import annotations

import pytest
import torch

import losskit
from losskit.errors import ConfigError

# default toy layout: digits 0-9 are ids 0-9, box start 10, box end 11; 12+ is text
BOX = [10, 1, 2, 12, 3, 4, 12, 5, 12, 9, 9, 11]  # <start>12,34,5,99<end>


def _labels(*rows: list[int], t: int = 16) -> torch.Tensor:
    return torch.tensor([[-100] + r + [-100] * (t - 1 - len(r)) for r in rows])


def _logits(labels: torch.Tensor, v: int = 14) -> torch.Tensor:
    return torch.randn(*labels.shape, v, generator=torch.Generator().manual_seed(0), requires_grad=True)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"digit_token_ids": list(range(9))}, "digit_token_ids: expected the ten ids"),
        ({"digit_token_ids": [0, 1, 2, 3, 4, 5, 6, 7, 8, 8]}, "digit_token_ids: expected distinct"),
        ({"coord_range": (5.0, 5.0)}, "coord_range: expected .* low < high"),
        ({"coord_range": (9.0, 1.0)}, "an empty range"),
        ({"style": "loc_tokens"}, "loc_token_ids: style 'loc_tokens' needs"),
        ({"style": "loc_tokens", "loc_first_id": 3}, "loc_first_id with num_bins"),
        ({"style": "loc_tokens", "loc_token_ids": [4]}, "at least 2 bins"),
        ({"separator_ids": [10]}, "separator_ids: a separator cannot be"),
        ({"box_end_id": None}, "needs box_start_id and box_end_id"),
        ({"l1_weight": -1.0}, "l1_weight"),
    ],
)
def test_bad_vocabularies_are_config_errors(fields, match) -> None:
    with pytest.raises(ConfigError, match=match):
        losskit.build("token_box", **fields)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"digit_token_ids": list(range(5, 15)), "box_start_id": 0, "box_end_id": 1}, r"digit_token_ids: token id 14 is outside the vocabulary of logits \(V = 14\)"),
        ({"box_end_id": 20}, r"box_end_id: token id 20 is outside"),
        ({"style": "loc_tokens", "loc_first_id": 10, "num_bins": 8}, r"loc_first_id: token id 17 is outside"),
    ],
)
def test_coordinate_ids_outside_the_vocabulary(fields, match) -> None:
    labels = _labels(BOX)
    with pytest.raises(ValueError, match=match):
        losskit.build("token_box", **fields)(_logits(labels), labels)


def test_linear_variant_names_the_weight() -> None:
    labels = _labels(BOX)
    loss = losskit.build("linear_token_box", box_end_id=30)
    with pytest.raises(ValueError, match=r"box_end_id: token id 30 is outside the vocabulary of weight \(V = 14\)"):
        loss(torch.randn(1, 16, 4), torch.randn(14, 4), labels)
    with pytest.raises(ValueError, match=r"weight: size 5 at dim 1 does not match the hidden size"):
        loss(torch.randn(1, 16, 4), torch.randn(14, 5), labels)
    with pytest.raises(ValueError, match=r"bias: size 3 at dim 0 does not match the vocabulary size"):
        losskit.build("linear_token_box")(torch.randn(1, 16, 4), torch.randn(14, 4), labels, bias=torch.randn(3))


@pytest.mark.parametrize(
    ("row", "fault", "boxes", "malformed"),
    [
        ([13, 10, 1, 12, 2, 12, 3, 12, 4], "row 1: the box starting at position 1 .* is unterminated", 1, 1),
        ([10, 1, 12, 2, 12, 3, 10, 1, 12, 2, 12, 3, 12, 4, 11], "row 1: the box starting at position 0 .* is unterminated", 2, 1),
        ([10, 1, 12, 2, 12, 3, 11], "row 1: .* has 3 numbers, expected 4", 1, 1),
        ([10, 1, 12, 2, 12, 3, 12, 4, 12, 5, 11], "row 1: .* has 5 numbers, expected 4", 1, 1),
        ([10, 1, 12, 2, -100, 3, 12, 4, 11], r"row 1: .* holds 1 token\(s\) that are neither digits nor separators", 1, 1),
    ],
)
def test_malformed_boxes_raise_with_the_row_or_are_skipped(row, fault, boxes, malformed) -> None:
    labels = _labels(BOX, row)
    logits = _logits(labels)
    with pytest.raises(ValueError, match=f"labels: {fault}"):
        losskit.build("token_box")(logits, labels)
    out = losskit.build("token_box", on_malformed="skip").compute(logits, labels)
    assert int(out.metrics["num_boxes"]) == boxes
    torch.testing.assert_close(out.metrics["malformed_share"], torch.tensor(malformed / (boxes + malformed)))
    if boxes == 1:  # the malformed box adds nothing: the loss is the good row's
        torch.testing.assert_close(out.loss, losskit.build("token_box")(logits[:1], labels[:1]))


def test_separators_restrict_what_may_sit_in_a_box() -> None:
    labels = _labels([10, 1, 13, 2, 13, 3, 13, 4, 11])
    loss = losskit.build("token_box", separator_ids=[12])
    with pytest.raises(ValueError, match=r"holds 3 token\(s\)"):
        loss(_logits(labels), labels)
    assert losskit.build("token_box", separator_ids=[13]).compute(_logits(labels), labels).metrics["num_boxes"] == 1


def test_loc_runs_of_the_wrong_arity() -> None:
    labels = _labels([13, 0, 1, 2, 3, 4, 5, 13])  # a run of 6: one box and a short one
    loss = losskit.build("token_box", style="loc_tokens", loc_first_id=0, num_bins=10)
    with pytest.raises(ValueError, match="row 0: the box starting at position 5 .* has 2 numbers, expected 4"):
        loss(_logits(labels), labels)
    out = losskit.build("token_box", style="loc_tokens", loc_first_id=0, num_bins=10, on_malformed="skip").compute(
        _logits(labels), labels
    )
    assert int(out.metrics["num_boxes"]) == 1 and float(out.metrics["malformed_share"]) == 0.5


def test_check_inputs_never_skips_the_value_checks() -> None:
    labels = _labels([10, 1, 12, 2, 11])
    logits = _logits(labels).detach().clone()
    logits[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"logits: expected finite values, got nan at index \(0, 0\)"):
        losskit.build("token_box")(logits, labels)
    out = losskit.build("token_box", check_inputs="never").compute(logits, labels)
    assert float(out.metrics["malformed_share"]) == 1.0 and int(out.metrics["num_boxes"]) == 0


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_no_box_gives_a_connected_zero(reduction) -> None:
    labels = _labels([13, 12, 5, 6])  # digits outside any box are not coordinates
    logits = _logits(labels)
    out = losskit.build("token_box", reduction=reduction, ntl_mse_weight=1.0).compute(logits, labels)
    assert out.loss.shape == (() if reduction != "none" else labels.shape)
    assert not out.loss.any() and out.loss.requires_grad
    out.loss.sum().backward()
    assert not logits.grad.any()
    assert int(out.metrics["num_boxes"]) == 0 and float(out.metrics["mean_iou"]) == 0.0


def test_empty_batch_and_all_weights_zero() -> None:
    logits = torch.randn(0, 5, 14, requires_grad=True)
    assert losskit.build("token_box")(logits, torch.zeros(0, 5, dtype=torch.long)).item() == 0.0
    assert losskit.build("token_box", reduction="none")(logits, torch.zeros(0, 5, dtype=torch.long)).shape == (0, 5)
    labels = _labels(BOX)
    off = losskit.build("token_box", l1_weight=0.0, iou_weight=0.0).compute(_logits(labels), labels)
    assert off.parts == {} and off.loss.item() == 0.0 and off.loss.requires_grad


def test_bad_tensors_and_arguments() -> None:
    labels = _labels(BOX)
    loss = losskit.build("token_box")
    with pytest.raises(TypeError, match="logits: expected a floating-point tensor"):
        loss(labels, labels)
    with pytest.raises(ValueError, match=r"logits: expected a 2-D or 3-D float tensor"):
        loss(torch.randn(14), labels)
    with pytest.raises(ValueError, match=r"labels: expected shape \(1, 16\)"):
        loss(_logits(labels), labels[:, :5])
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 14\)"):
        loss(_logits(labels), labels + 20)
    with pytest.raises(ValueError, match="num_boxes: only used by reduction='mean'"):
        losskit.build("token_box", reduction="sum")(_logits(labels), labels, num_boxes=3)
    with pytest.raises(ValueError, match="num_boxes: expected a finite number >= 0"):
        loss(_logits(labels), labels, num_boxes=-1)


def test_low_precision_logits_compute_in_float32() -> None:
    labels = _labels(BOX, BOX)
    logits = _logits(labels).detach()
    for dtype in (torch.float16, torch.bfloat16):
        low = logits.to(dtype)
        out = losskit.build("token_box", ntl_wasserstein_weight=1.0)(low, labels)
        want = losskit.build("token_box", ntl_wasserstein_weight=1.0)(low.float(), labels)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, want)
