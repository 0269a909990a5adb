"""Detached metrics of the contrastive losses: top-1 accuracy and mean positive/negative logits."""

from __future__ import annotations

import torch
from torch import Tensor

from losskit_plugins.contrastive.engine import EngineResult
from losskit_plugins.contrastive.normalize import unit
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
    x: Tensor, y: Tensor, scale: Tensor, bias: Tensor | None, result: EngineResult, *, normalize: bool
) -> dict[str, Tensor]:
    """Mean positive and mean negative logit of ``scale * x @ y.T + bias`` (rows L2-normalised
    first if ``normalize``) in ``O((R + C) D)``, from the positives' logit sum and count in
    ``result``; no host synchronisation."""
    with torch.no_grad():
        x, y = x.to(scale.dtype), y.to(scale.dtype)  # fp16 / bf16 operands of the fused kernels: sums in fp32
        if normalize:
            x, y = unit(x)[0], unit(y)[0]
        R, Cn = x.shape[0], y.shape[0]
        total = scale * (x.sum(0) @ y.sum(0)) + (R * Cn * bias if bias is not None else 0)
        n_pos = result.positive_count.to(total.dtype)
        pos_sum = result.positive_sum.to(total.dtype)
        n_neg = R * Cn - n_pos
        neg = torch.where(n_neg > 0, (total - pos_sum) / n_neg.clamp_min(1), torch.zeros_like(total))
        pos = torch.where(n_pos > 0, pos_sum / n_pos.clamp_min(1), torch.zeros_like(total))
    return {"positive_logit": pos, "negative_logit": neg}
