"""Byte-level tokenizer: UTF-8 round trips in any language, padding, truncation."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from losskit.train.tokenizer import ByteTokenizer


@given(st.text(max_size=40))
def test_round_trip_any_unicode(text):
    tok = ByteTokenizer(max_length=256)
    ids = tok([text])[0]
    assert tok.decode(ids) == text
    n = len(text.encode("utf-8"))
    assert ids[0] == ByteTokenizer.BOS and ids[n + 1] == ByteTokenizer.EOS
    assert torch.all(ids[n + 2 :] == ByteTokenizer.PAD)


def test_chinese_caption_is_three_tokens_per_character():
    tok = ByteTokenizer(max_length=32)
    ids = tok.encode("红色的圆")
    assert len(ids) == 2 + 4 * 3
    assert tok.decode(ids) == "红色的圆"


def test_truncation_keeps_eos_and_length():
    tok = ByteTokenizer(max_length=6)
    batch = tok(["abcdefghij", "a"])
    assert batch.shape == (2, 6) and batch.dtype == torch.long
    assert batch[0, -1] == ByteTokenizer.EOS and tok.decode(batch[0]) == "abcd"
    assert batch[1].tolist() == [1, ord("a") + 3, 2, 0, 0, 0]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="max_length"):
        ByteTokenizer(max_length=2)
    with pytest.raises(TypeError, match="text"):
        ByteTokenizer().encode(b"bytes")  # type: ignore[arg-type]
