"""What ``token_ce`` and ``linear_token_ce`` check and prepare before any row is scored:
labels (shift, ignore_index, per-token weights), ``num_items_in_batch``, class weights,
the compute dtype and the row options, in one place (:func:`prepare_call`)."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from losskit.checks import InputChecks
from losskit.config import Reduction
from losskit_plugins.tokens.inputs import FlatLabels, check_class_weights, check_num_items, flat_labels
from losskit_plugins.tokens.kernels import RowOptions
from losskit_plugins.tokens.output import check_reduction

__all__ = ["TokenCall", "prepare_call"]


class _Fields(Protocol):
    """The config fields both token losses share."""

    shift: bool
    ignore_index: int
    label_smoothing: float
    softcap: float | None
    reduction: Reduction
    check_inputs: InputChecks


class TokenCall(NamedTuple):
    """Checked inputs of one call."""

    flat: FlatLabels  # flattened targets / weights of the ``[N]`` rows
    num_items: Tensor | None  # ``num_items_in_batch`` as a 0-d tensor, or None
    dtype: torch.dtype  # the compute dtype
    class_weights: Tensor | None  # ``[V]`` in ``dtype``, or None
    opts: RowOptions


def prepare_call(
    cfg: _Fields,
    labels: Tensor,
    lead_shape: torch.Size,
    num_classes: int,
    *,
    inputs_name: str,
    device: torch.device,
    dtype: torch.dtype,
    weights: Tensor | None,
    num_items_in_batch: int | Tensor | None,
    class_weights: Tensor | None,
) -> TokenCall:
    """Check the labels against the inputs' leading shape ``lead_shape`` (``[B, T]`` or
    ``[N]``) and ``num_classes`` (V), ``num_items_in_batch`` against the reduction, and the
    class weights; return them prepared with the row options."""
    flat = flat_labels(
        labels,
        lead_shape,
        num_classes,
        inputs_name=inputs_name,
        device=device,
        shift=cfg.shift,
        ignore_index=cfg.ignore_index,
        weights=weights,
        check_inputs=cfg.check_inputs,
    )
    num_items = check_num_items(num_items_in_batch, device, cfg.check_inputs)
    check_reduction(cfg.reduction, num_items)
    cw = check_class_weights(class_weights, num_classes, device, cfg.check_inputs, dtype)
    return TokenCall(flat, num_items, dtype, cw, RowOptions(cfg.label_smoothing, cw, cfg.softcap))
