"""From per-token results to a :class:`losskit.LossOutput` (reduction, parts, metrics).

Conventions (Hugging Face transformers' ``ForCausalLMLoss``): ``"mean"`` is the sum
over tokens divided by ``num_items_in_batch`` when given, else by the number of
supervised tokens; the z-loss (PaLM, Chowdhery et al. 2022, section 5) is
``z_loss * (log Z)^2`` per supervised token, reduced the same way. Per-token
``weights`` scale both terms; the divisor stays a token count.
"""

from __future__ import annotations

import torch
from torch import Tensor

import losskit
from losskit.config import Reduction

from losskit_plugins.tokens.inputs import FlatLabels
from losskit_plugins.tokens.kernels import Targets

__all__ = ["check_reduction", "divisor", "metrics", "token_output"]


def check_reduction(reduction: Reduction, num_items: Tensor | None) -> None:
    """``num_items_in_batch`` replaces the divisor of ``"mean"``; any other reduction rejects it."""
    if num_items is not None and reduction != "mean":
        raise ValueError(
            f"num_items_in_batch: only used with reduction='mean' (loss = sum / num_items_in_batch), "
            f"got reduction={reduction!r}"
        )


def divisor(targets: Targets, num_items: Tensor | None, dtype: torch.dtype) -> Tensor:
    """The divisor of ``"mean"``: ``num_items_in_batch``, else the supervised count (at least 1)."""
    if num_items is not None:
        return num_items.to(dtype)
    return targets.valid.sum().clamp(min=1).to(dtype)


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
) -> losskit.LossOutput:
    """Weight, reduce and package per-token ``ce [N]`` and ``lse [N]`` (both attached to the graph)."""
    zero = torch.zeros((), dtype=lse.dtype, device=lse.device)
    z_rows = torch.where(labels.targets.valid, z_loss * lse.square(), zero)
    if labels.weights is not None:
        w = labels.weights.to(ce.dtype)
        ce, z_rows = ce * w, z_rows * w
    if reduction == "none":
        parts = {"ce": ce.reshape(labels.shape), "z_loss": z_rows.reshape(labels.shape)}
    elif reduction == "sum":
        parts = {"ce": ce.sum(), "z_loss": z_rows.sum()}
    else:
        norm = divisor(labels.targets, num_items, ce.dtype)
        parts = {"ce": ce.sum() / norm, "z_loss": z_rows.sum() / norm}
    return losskit.LossOutput(
        loss=parts["ce"] + parts["z_loss"], parts=parts, metrics=metrics(labels.targets, lse, correct)
    )
