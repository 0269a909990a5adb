"""Masking vision tokens out of language-model labels (Qwen2-VL / LLaVA-style multimodal LLMs).

A multimodal LLM's sequence holds image/video placeholder tokens (one per visual
patch) between vision control tokens; none of them is a prediction target. Training
code (e.g. LLaMA-Factory) sets their labels to ``ignore_index`` (-100).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from losskit.checks import check_index

__all__ = ["QWEN2_VL_VISION_TOKEN_IDS", "mask_tokens", "vision_span_mask", "vision_span_violations"]

#: Vision token ids of Qwen2-VL's tokenizer (``config.json``: ``vision_start_token_id`` ...).
QWEN2_VL_VISION_TOKEN_IDS: dict[str, int] = {
    "vision_start": 151652,
    "vision_end": 151653,
    "vision_pad": 151654,
    "image_pad": 151655,
    "video_pad": 151656,
}


def _ids_tensor(token_ids: Iterable[int] | Tensor, like: Tensor) -> Tensor:
    ids = token_ids if isinstance(token_ids, Tensor) else torch.tensor(list(token_ids), dtype=torch.long)
    check_index(ids, "token_ids", (0, 1))
    return ids.to(device=like.device, dtype=like.dtype).reshape(-1)


def _check_pair(labels: Tensor, input_ids: Tensor) -> None:
    check_index(labels, "labels")
    check_index(input_ids, "input_ids")
    if labels.shape != input_ids.shape:
        raise ValueError(f"labels: expected shape {tuple(input_ids.shape)} (same as input_ids), got {tuple(labels.shape)}")


def mask_tokens(
    labels: Tensor, input_ids: Tensor, token_ids: Iterable[int] | Tensor, ignore_index: int = -100
) -> Tensor:
    """Return a copy of ``labels`` with ``ignore_index`` wherever ``input_ids`` is one of ``token_ids``.

    Args:
        labels: ``[B, T]`` (or any shape) integer labels, aligned with ``input_ids``.
        input_ids: token ids, same shape as ``labels``.
        token_ids: ids to mask, e.g. ``QWEN2_VL_VISION_TOKEN_IDS.values()``.
        ignore_index: value written into masked positions (default -100).

    Example: ``labels = mask_tokens(input_ids.clone(), input_ids, [151652, 151653, 151655])``.
    """
    _check_pair(labels, input_ids)
    hit = torch.isin(input_ids, _ids_tensor(token_ids, input_ids))
    return labels.masked_fill(hit, ignore_index)


def vision_span_mask(input_ids: Tensor, start_id: int, end_id: int) -> Tensor:
    """Bool mask of the tokens inside vision spans, ``start_id`` and ``end_id`` included.

    A row may be cut inside a span (truncation, sequence-parallel shards): an opener
    without a closer extends to the end of the row, and a closer that comes before any
    opener closes a span that started before the row. Spans do not nest.

    Args:
        input_ids: ``[B, T]`` or ``[T]`` token ids; spans do not cross rows.
        start_id: id of the span opener (Qwen2-VL: ``<|vision_start|>`` 151652).
        end_id: id of the span closer (Qwen2-VL: ``<|vision_end|>`` 151653).
    """
    check_index(input_ids, "input_ids", (1, 2), layout="[B, T] or [T]")
    t = input_ids.shape[-1]
    if t == 0:
        return torch.zeros_like(input_ids, dtype=torch.bool)
    pos = torch.arange(t, device=input_ids.device).expand_as(input_ids)  # [B, T] or [T]
    is_start, is_end = input_ids == start_id, input_ids == end_id
    last_start = torch.where(is_start, pos, -1).cummax(-1).values  # last opener at or before each token
    last_end = torch.where(is_end, pos, -1).cummax(-1).values
    last_end_before = F.pad(last_end[..., :-1], (1, 0), value=-1)  # last closer strictly before each token
    opened = last_start > last_end_before
    first_start = torch.where(is_start, pos, t).amin(-1, keepdim=True)
    first_end = torch.where(is_end, pos, t).amin(-1, keepdim=True)
    cut_at_start = (first_end < first_start) & (pos <= first_end)  # the row begins inside a span
    return opened | cut_at_start


def vision_span_violations(
    labels: Tensor,
    input_ids: Tensor,
    *,
    start_id: int = QWEN2_VL_VISION_TOKEN_IDS["vision_start"],
    end_id: int = QWEN2_VL_VISION_TOKEN_IDS["vision_end"],
    ignore_index: int = -100,
) -> Tensor:
    """Positions ``[K, labels.dim()]`` of supervised labels that fall inside a vision span.

    An empty result means the labels are clean; anything else is a data bug (the model
    would be trained to emit image placeholders). Raise with
    ``if len(bad): raise ValueError(f"supervised labels inside vision spans at {bad.tolist()}")``.
    """
    _check_pair(labels, input_ids)
    inside = vision_span_mask(input_ids, start_id, end_id)
    return torch.nonzero(inside & (labels != ignore_index))
