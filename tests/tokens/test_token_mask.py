"""Vision-token masking helpers of the tokens plugin."""

from __future__ import annotations

import pytest
import torch

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
