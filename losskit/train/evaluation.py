"""Group-aware image↔text retrieval: recall@K on a validation split.

A retrieved caption (image) is a hit when it belongs to the query's group: any of the
five COCO captions of an image counts, and in the generated dataset any image with the
same description. Chance level is the expected recall of a random ranking.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["chance_recall", "recall_at_k"]


def _hits(similarity: Tensor, query_group: Tensor, key_group: Tensor, ks: Sequence[int]) -> dict[int, float]:
    k_max = min(max(ks), similarity.shape[1])
    top = similarity.topk(k_max, dim=1).indices  # [Q, k_max]
    hit = key_group[top] == query_group[:, None]  # [Q, k_max]
    first = torch.cumsum(hit.int(), dim=1) > 0  # [Q, k_max]: a hit within the first k
    return {k: float(first[:, min(k, k_max) - 1].float().mean()) for k in ks}


def recall_at_k(
    image_features: Tensor,
    text_features: Tensor,
    image_group: Tensor,
    text_group: Tensor,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Image→text and text→image recall@K, group-aware.

    Args:
        image_features: ``[I, E]`` one row per validation image.
        text_features: ``[T, E]`` one row per validation caption.
        image_group: ``[I]`` group id of each image.
        text_group: ``[T]`` group id of each caption.
        ks: the K values.

    Returns:
        ``{"i2t_r1": ..., "i2t_r5": ..., "t2i_r1": ..., ...}`` in [0, 1].
    """
    similarity = image_features.float() @ text_features.float().T  # [I, T]
    out = {f"i2t_r{k}": v for k, v in _hits(similarity, image_group, text_group, ks).items()}
    out.update({f"t2i_r{k}": v for k, v in _hits(similarity.T, text_group, image_group, ks).items()})
    return out


def chance_recall(image_group: Tensor, text_group: Tensor) -> dict[str, float]:
    """Expected recall@1 of a uniformly random ranking, both directions."""
    same = image_group[:, None] == text_group[None, :]  # [I, T]
    return {
        "i2t_r1": float(same.float().mean(1).mean()),
        "t2i_r1": float(same.float().mean(0).mean()),
    }
