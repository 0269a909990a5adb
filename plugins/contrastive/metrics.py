"""Detached metrics of the contrastive losses: top-1 accuracy and mean positive/negative logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from losskit_plugins.contrastive.pairs import Pairs

__all__ = ["accuracy", "mean_logits"]


def accuracy(pairs: Pairs, argmax: Tensor, by_rows: bool) -> Tensor:
    """Top-1 accuracy: share of rows (or columns) whose arg-max is one of their positives."""
    n = pairs.num_rows if by_rows else pairs.num_cols
    idx = torch.arange(n, device=argmax.device)
    inside = argmax < (pairs.num_cols if by_rows else pairs.num_rows)  # an explicit negative won
    safe = torch.where(inside, argmax, torch.zeros_like(argmax))
    hit = (pairs.is_positive(idx, safe) if by_rows else pairs.is_positive(safe, idx)) & inside
    count = pairs.row_count(torch.float32) if by_rows else pairs.col_count(torch.float32)
    has = count > 0  # rows (columns) without a positive do not count; none at all gives 0
    return (hit & has).sum().float() / has.sum().clamp_min(1).float()  # no host sync


def mean_logits(
    x: Tensor, y: Tensor, scale: Tensor, bias: Tensor | None, positive_logits: Tensor, *, normalize: bool
) -> dict[str, Tensor]:
    """Mean positive and mean negative logit of ``scale * x @ y.T + bias`` (rows L2-normalised
    first if ``normalize``) in ``O((R + C) D)``."""
    with torch.no_grad():
        if normalize:
            x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
        R, Cn = x.shape[0], y.shape[0]
        total = scale * (x.sum(0) @ y.sum(0)) + (R * Cn * bias if bias is not None else 0)
        n_pos = positive_logits.numel()
        pos_sum = positive_logits.sum()
        n_neg = R * Cn - n_pos
        neg = (total - pos_sum) / n_neg if n_neg > 0 else total.new_zeros(())
        pos = pos_sum / n_pos if n_pos > 0 else total.new_zeros(())
    return {"positive_logit": pos, "negative_logit": neg}
