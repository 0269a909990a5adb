"""From per-token results to a :class:`losskit.LossOutput` (reduction, parts, metrics).

Conventions (Hugging Face transformers' ``ForCausalLMLoss``): ``"mean"`` is the sum
over tokens divided by ``num_items_in_batch`` when given, else by the number of
supervised tokens; the z-loss (PaLM, Chowdhery et al. 2022, section 5) is
``z_loss * (log Z)^2`` per supervised token, reduced the same way (skipped when the
coefficient is 0, so an infinite log Z cannot turn into NaN). Per-token ``weights``
scale both terms; the divisor stays a token count. With per-class weights ``w`` the
cross-entropy of a token is weighted by ``w[target]`` and ``"mean"`` divides by the sum
of ``w[target]`` over supervised tokens, as ``F.cross_entropy(weight=w)`` does (unless
``num_items_in_batch`` is given).
"""

from __future__ import annotations

import torch
from torch import Tensor

import losskit
from losskit.config import Reduction

from losskit_plugins.tokens.inputs import FlatLabels
from losskit_plugins.tokens.kernels import Targets

__all__ = ["check_reduction", "divisor", "metrics", "row_scale", "token_output", "triton_output"]


def check_reduction(reduction: Reduction, num_items: Tensor | None) -> None:
    """``num_items_in_batch`` replaces the divisor of ``"mean"``; any other reduction rejects it."""
    if num_items is not None and reduction != "mean":
        raise ValueError(
            f"num_items_in_batch: only used with reduction='mean' (loss = sum / num_items_in_batch), "
            f"got reduction={reduction!r}"
        )


def divisor(targets: Targets, num_items: Tensor | None, dtype: torch.dtype, class_weights: Tensor | None = None) -> Tensor:
    """The divisor of ``"mean"``: ``num_items_in_batch``, else the supervised count (at least 1),
    or with ``class_weights [V]`` the sum of the targets' class weights (as ``F.cross_entropy``;
    1 where that sum is 0, so that an all-ignored batch gives 0 rather than ``F.cross_entropy``'s NaN)."""
    if num_items is not None:
        return num_items.to(dtype)
    if class_weights is not None:
        zero = torch.zeros((), dtype=dtype, device=class_weights.device)
        total = torch.where(targets.valid, class_weights[targets.index].to(dtype), zero).sum()
        return torch.where(total > 0, total, torch.ones_like(total))
    return targets.valid.sum().clamp(min=1).to(dtype)


def row_scale(
    labels: FlatLabels, reduction: Reduction, num_items: Tensor | None, dtype: torch.dtype, class_weights: Tensor | None
) -> Tensor:
    """``[N]`` factor of each token's loss in the reduced loss: 0 on ignored tokens, else its
    weight (1 without ``weights``), divided by the ``"mean"`` divisor."""
    scale = labels.targets.valid.to(dtype)
    if labels.weights is not None:
        scale = scale * labels.weights.to(dtype)
    if reduction == "mean":
        scale = scale / divisor(labels.targets, num_items, dtype, class_weights)
    return scale


def metrics(targets: Targets, lse: Tensor, correct: Tensor) -> dict[str, Tensor]:
    """Token accuracy and mean log Z over supervised tokens, and their number."""
    count = targets.valid.sum()
    denom = count.clamp(min=1).to(lse.dtype)
    zero = torch.zeros((), dtype=lse.dtype, device=lse.device)
    return {
        "accuracy": correct.sum().to(lse.dtype) / denom,
        "num_tokens": count,
        "mean_log_z": torch.where(targets.valid, lse.detach(), zero).sum() / denom,
    }


def token_output(
    ce: Tensor,
    lse: Tensor,
    correct: Tensor,
    labels: FlatLabels,
    *,
    z_loss: float,
    reduction: Reduction,
    num_items: Tensor | None,
    class_weights: Tensor | None = None,
) -> losskit.LossOutput:
    """Weight, reduce and package per-token ``ce [N]`` and ``lse [N]`` (both attached to the graph)."""
    scale = row_scale(labels, reduction, num_items, ce.dtype, class_weights)
    ce = ce * scale
    z_rows = _z_rows(lse, labels.targets, scale, z_loss)
    parts = {"ce": _reduce(ce, labels, reduction), "z_loss": _reduce(z_rows, labels, reduction)}
    return losskit.LossOutput(
        loss=parts["ce"] + parts["z_loss"], parts=parts, metrics=metrics(labels.targets, lse, correct)
    )


def _z_rows(lse: Tensor, targets: Targets, scale: Tensor, z_loss: float) -> Tensor:
    """``z_loss (log Z)^2 scale`` per token; zeros when ``z_loss`` is 0. Ignored tokens' log Z
    is masked before squaring, so neither an infinite value nor its gradient leaks as NaN."""
    if z_loss == 0:
        return torch.zeros_like(lse)
    lse = torch.where(targets.valid, lse, torch.zeros((), dtype=lse.dtype, device=lse.device))
    return z_loss * lse.square() * scale


def _reduce(rows: Tensor, labels: FlatLabels, reduction: Reduction) -> Tensor:
    """Already scaled per-token values ``[N]``: summed, or in the labels' shape for ``"none"``."""
    return rows.reshape(labels.shape) if reduction == "none" else rows.sum()


def triton_output(
    row_loss: Tensor, ce: Tensor, lse: Tensor, correct: Tensor, scale: Tensor, labels: FlatLabels, *, z_loss: float, reduction: Reduction
) -> losskit.LossOutput:
    """Package the Triton path's scaled per-token loss ``row_loss [N]`` (the only differentiable
    result; ``parts`` are detached values computed from ``ce``, ``lse`` and ``scale``)."""
    scale = scale.detach()
    z_rows = _z_rows(lse, labels.targets, scale, z_loss)
    parts = {"ce": _reduce(ce * scale, labels, reduction), "z_loss": _reduce(z_rows, labels, reduction)}
    return losskit.LossOutput(
        loss=_reduce(row_loss, labels, reduction), parts=parts, metrics=metrics(labels.targets, lse, correct)
    )
