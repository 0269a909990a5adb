"""Vision-token masking helpers of the tokens plugin."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from losskit_plugins.tokens import QWEN2_VL_VISION_TOKEN_IDS, mask_tokens, vision_span_mask, vision_span_violations

VS, VE, IMG = (QWEN2_VL_VISION_TOKEN_IDS[k] for k in ("vision_start", "vision_end", "image_pad"))


def _sequence():
    # text, <vision_start>, 3 image pads, <vision_end>, text
    return torch.tensor([[11, 12, VS, IMG, IMG, IMG, VE, 13, 14], [VS, IMG, VE, 21, 22, VS, IMG, VE, 23]])


def test_mask_tokens_masks_every_listed_id_and_nothing_else():
    ids = _sequence()
    masked = mask_tokens(ids.clone(), ids, QWEN2_VL_VISION_TOKEN_IDS.values())
    vision = torch.isin(ids, torch.tensor(list(QWEN2_VL_VISION_TOKEN_IDS.values())))
    assert torch.equal(masked == -100, vision)
    assert torch.equal(masked[~vision], ids[~vision])
    assert not torch.equal(masked, ids)


def test_mask_tokens_keeps_existing_ignores_and_custom_index():
    ids = _sequence()
    labels = ids.clone()
    labels[0, :2] = -100  # prompt
    out = mask_tokens(labels, ids, torch.tensor([IMG]), ignore_index=-1)
    assert (out[0, :2] == -100).all()
    assert torch.equal(out == -1, ids == IMG)
    assert torch.equal(labels[0, :2], torch.tensor([-100, -100]))  # input untouched


def test_vision_span_mask_includes_the_delimiters():
    inside = vision_span_mask(_sequence(), VS, VE)
    expected = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 1, 1, 1, 0]], dtype=torch.bool)
    assert torch.equal(inside, expected)


def _reference_span_mask(row: list[int]) -> list[bool]:
    """Scan one row: inside from an opener through its closer; a row whose first marker
    is a closer starts inside (its span was cut off at the left)."""
    markers = [x for x in row if x in (VS, VE)]
    inside, out = bool(markers) and markers[0] == VE, []
    for x in row:
        inside = inside or x == VS
        out.append(inside)
        inside = inside and x != VE
    return out


@given(st.data())
def test_vision_span_mask_matches_a_scan_including_cut_spans(data):
    """Openers, closers, pads and text in any order (unmatched, repeated, cut at either end)."""
    t = data.draw(st.integers(1, 12), label="T")
    rows = data.draw(st.lists(st.lists(st.sampled_from([1, 2, VS, VE, IMG]), min_size=t, max_size=t), min_size=1, max_size=4))
    ids = torch.tensor(rows)  # [B, T]
    expected = torch.tensor([_reference_span_mask(r) for r in rows])
    assert torch.equal(vision_span_mask(ids, VS, VE), expected)
    assert torch.equal(vision_span_mask(ids[0], VS, VE), expected[0])  # [T] input


def test_vision_span_mask_of_truncated_rows():
    ids = torch.tensor([[IMG, IMG, VE, 11, VS, IMG, VE, 12], [11, VS, IMG, VE, 12, VS, IMG, IMG]])
    inside = vision_span_mask(ids, VS, VE)
    # row 0 begins inside a span and has a whole one later; row 1 ends inside one
    expected = torch.tensor([[1, 1, 1, 0, 1, 1, 1, 0], [0, 1, 1, 1, 0, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(inside, expected)
    assert vision_span_mask(torch.zeros(2, 0, dtype=torch.long), VS, VE).shape == (2, 0)


def test_violations_report_supervised_labels_inside_spans():
    ids = _sequence()
    labels = mask_tokens(ids.clone(), ids, [VS, VE, IMG])
    assert vision_span_violations(labels, ids).numel() == 0
    labels[1, 6] = 5  # a supervised label on an image pad
    assert vision_span_violations(labels, ids).tolist() == [[1, 6]]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: mask_tokens(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long), [1]), ValueError, "labels: expected shape"),
        (lambda: mask_tokens(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), [1]), TypeError, "labels: expected an integer"),
        (lambda: mask_tokens(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), torch.tensor([1.0])), TypeError, "token_ids"),
        (lambda: vision_span_mask(torch.zeros(2, 2, 2, dtype=torch.long), VS, VE), ValueError, "input_ids: expected a 1-D or 2-D"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
