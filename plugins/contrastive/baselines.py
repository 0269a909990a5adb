"""Reference implementations timed side by side with the contrastive losses by
``losskit bench`` and ``benchmarks/contrastive_*.py``. Each takes the loss's inputs.

The ``open_clip_*`` baselines call open_clip's own losses; they are declared only when
the optional ``open_clip`` package is installed (:func:`open_clip_available`) and import
it on first call, so losskit never depends on it.
"""

from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn.functional as F
from torch import Tensor

from losskit.bench.floors import three_matmul_floor

__all__ = [
    "dense_ce_clip",
    "dense_siglip",
    "info_nce_reference",
    "open_clip_available",
    "open_clip_clip",
    "open_clip_siglip",
    "three_matmul_floor",
]

_CLIP_SCALE = 1 / 0.07


def dense_ce_clip(image_features: Tensor, text_features: Tensor, **_: object) -> Tensor:
    """The straightforward open_clip ``ClipLoss``: two ``F.cross_entropy`` over ``[B, B]`` logits."""
    img, txt = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    logits_per_image = _CLIP_SCALE * img @ txt.T  # [B, B]
    logits_per_text = logits_per_image.T
    labels = torch.arange(img.shape[0], device=img.device)
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def dense_siglip(image_features: Tensor, text_features: Tensor, **_: object) -> Tensor:
    """The straightforward open_clip ``SigLipLoss`` (scale 10, bias -10)."""
    img, txt = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    logits = 10.0 * img @ txt.T - 10.0  # [B, B]
    labels = 2 * torch.eye(img.shape[0], device=img.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / img.shape[0]


def open_clip_available() -> bool:
    """True when the optional ``open_clip`` package can be imported (found without importing it)."""
    return importlib.util.find_spec("open_clip") is not None


@functools.lru_cache(maxsize=None)
def _open_clip_loss(name: str) -> torch.nn.Module:
    from open_clip import loss  # optional dependency, imported on first use only

    return getattr(loss, name)()


def open_clip_clip(image_features: Tensor, text_features: Tensor, **_: object) -> Tensor:
    """open_clip's ``ClipLoss`` on L2-normalised features at ``clip``'s default scale 1/0.07."""
    img, txt = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    return _open_clip_loss("ClipLoss")(img, txt, _CLIP_SCALE)


def open_clip_siglip(image_features: Tensor, text_features: Tensor, **_: object) -> Tensor:
    """open_clip's ``SigLipLoss`` on L2-normalised features at ``siglip``'s defaults (scale 10, bias -10)."""
    img, txt = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    return _open_clip_loss("SigLipLoss")(img, txt, 10.0, -10.0)


def info_nce_reference(query: Tensor, positive_key: Tensor, negative_keys: Tensor | None = None, **_: object) -> Tensor:
    """info-nce-pytorch's ``info_nce`` (temperature 0.1; in-batch mode without negatives)."""
    q, k = F.normalize(query, dim=-1), F.normalize(positive_key, dim=-1)
    if negative_keys is None:
        return F.cross_entropy(q @ k.T / 0.1, torch.arange(q.shape[0], device=q.device))
    n = F.normalize(negative_keys, dim=-1)
    pos = (q * k).sum(1, keepdim=True)  # [N, 1]
    negs = q @ n.T if n.dim() == 2 else torch.einsum("nd,nmd->nm", q, n)  # [N, M]
    logits = torch.cat([pos, negs], 1) / 0.1
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
