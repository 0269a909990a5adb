"""Build a ``token_box`` config from a tokenizer: :func:`from_tokenizer`."""

from __future__ import annotations

from typing import Any, Literal

from losskit.config import validate_config
from losskit_plugins.token_box.config import LinearTokenBoxConfig, TokenBoxConfig

__all__ = ["QWEN2_VL_BOX_TOKENS", "from_tokenizer"]

#: Qwen2-VL's box delimiters and the text it writes between the numbers of a box.
QWEN2_VL_BOX_TOKENS = ("<|box_start|>", "<|box_end|>")
_QWEN2_VL_TEMPLATE = "(1,2),(3,4)"


def _token_id(tok: Any, token: str, style: str) -> int:
    """The id of ``token`` in ``tok``'s vocabulary; ``ValueError`` naming it when absent."""
    vocab = tok.get_vocab()
    if token not in vocab:
        raise ValueError(f"tok: style {style!r} needs the token {token!r}, which this tokenizer's vocabulary lacks")
    return int(vocab[token])


def _qwen2_vl(tok: Any) -> dict[str, Any]:
    digits = [_token_id(tok, str(d), "qwen2_vl") for d in range(10)]
    start, end = (_token_id(tok, t, "qwen2_vl") for t in QWEN2_VL_BOX_TOKENS)
    ids = tok(_QWEN2_VL_TEMPLATE, add_special_tokens=False)["input_ids"]
    numbers = [i for i in ids if i in digits]
    if len(numbers) != 4:  # Qwen2 splits numbers into single digits; a tokenizer that merges them cannot be used
        raise ValueError(
            f"tok: style 'qwen2_vl' needs numbers tokenised digit by digit; {_QWEN2_VL_TEMPLATE!r} gave ids {ids}"
        )
    separators = sorted({i for i in ids if i not in digits})
    return {"style": "digits", "digit_token_ids": digits, "box_start_id": start, "box_end_id": end,
            "separator_ids": separators, "coord_range": (0.0, 1000.0), "box_format": "xyxy"}


def _loc_tokens(tok: Any, num_bins: int, template: str) -> dict[str, Any]:
    ids = [_token_id(tok, template.format(k), "loc_tokens") for k in range(num_bins)]
    if ids == list(range(ids[0], ids[0] + num_bins)):
        return {"style": "loc_tokens", "loc_first_id": ids[0], "num_bins": num_bins, "coord_range": (0.0, 1.0)}
    return {"style": "loc_tokens", "loc_token_ids": ids, "coord_range": (0.0, 1.0)}


def from_tokenizer(
    tok: Any,
    style: Literal["qwen2_vl", "loc_tokens"],
    *,
    num_bins: int = 1000,
    loc_template: str = "<loc_{}>",
    linear: bool = False,
    **overrides: Any,
) -> TokenBoxConfig:
    """A :class:`TokenBoxConfig` whose coordinate vocabulary comes from ``tok``.

    Args:
        tok: a Hugging Face tokenizer (anything with ``get_vocab()`` and ``__call__``).
        style: ``"qwen2_vl"``: numbers written digit by digit between ``<|box_start|>`` and
            ``<|box_end|>``, 0-1000, xyxy; the separators are the non-digit tokens of
            ``"(1,2),(3,4)"`` as ``tok`` splits it. ``"loc_tokens"``: ``num_bins`` location
            tokens named by ``loc_template`` (Florence-2: 1000 ``<loc_k>``; PaliGemma: 1024).
        num_bins: loc_tokens: the number of bins (default 1000).
        loc_template: loc_tokens: the token of bin ``k`` as ``loc_template.format(k)``.
        linear: return a :class:`LinearTokenBoxConfig` (builds ``linear_token_box``).
        **overrides: further config fields (weights, ``iou_loss``, ``box_format`` ...).

    Raises:
        ValueError: a needed token is missing from the vocabulary, or numbers are not
            tokenised digit by digit; ``losskit.errors.ConfigError`` for bad overrides.
    """
    if style == "qwen2_vl":
        fields = _qwen2_vl(tok)
    elif style == "loc_tokens":
        fields = _loc_tokens(tok, num_bins, loc_template)
    else:
        raise ValueError(f"style: expected 'qwen2_vl' or 'loc_tokens', got {style!r}")
    config_class = LinearTokenBoxConfig if linear else TokenBoxConfig
    return validate_config(config_class, {**fields, **overrides})  # type: ignore[return-value]
