"""Input checks and label preparation shared by ``token_ce`` and ``linear_token_ce``.

Labels follow Hugging Face transformers' ``ForCausalLMLoss``: with the causal shift,
``labels`` are padded with ``ignore_index`` on the right and shifted left by one, so
position ``t`` of the logits (or hidden states) predicts ``labels[..., t + 1]``; the
logits are never sliced or copied.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from losskit.checks import check_float, check_index, check_same_device

from losskit_plugins.tokens.kernels import Targets

__all__ = ["FlatLabels", "check_num_items", "flat_labels", "flat_rows"]


class FlatLabels(NamedTuple):
    """Labels prepared for the kernels.

    Attributes:
        targets: ``[N]`` target index (0 on ignored rows) and supervised mask.
        weights: ``[N]`` per-token weights (shifted with the labels), or None.
        shape: shape of the (shifted) labels; ``reduction="none"`` returns this shape.
    """

    targets: Targets
    weights: Tensor | None
    shape: torch.Size


def flat_rows(x: Tensor, name: str, layout: str) -> Tensor:
    """``x [B, T, F]`` or ``[N, F]`` as ``[N, F]`` (a view when ``x`` is contiguous)."""
    check_float(x, name, (2, 3), layout=layout)
    return x.reshape(-1, x.shape[-1])


def _shifted(t: Tensor, fill: float | int) -> Tensor:
    return F.pad(t, (0, 1), value=fill)[..., 1:]


def _check_on_device(ok: Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``ok``; on an accelerator, assert without a host sync."""
    if ok.device.type == "cpu":
        if not bool(ok):
            raise ValueError(message)
    else:
        torch._assert_async(ok, message)


def flat_labels(
    labels: object,
    rows_shape: torch.Size,
    num_classes: int,
    *,
    inputs_name: str,
    device: torch.device,
    shift: bool | None,
    ignore_index: int,
    weights: object = None,
) -> FlatLabels:
    """Check ``labels`` (and ``weights``) against the rows they label, shift and flatten them.

    Args:
        labels: ``[B, T]`` or ``[N]`` class indices of any integer dtype; ``ignore_index``
            marks unsupervised tokens.
        rows_shape: leading shape of the logits / hidden states (``[B, T]`` or ``[N]``).
        num_classes: ``V``; supervised labels must lie in ``[0, V)``.
        inputs_name: name of the logits / hidden argument, for messages.
        device: device of the logits / hidden states.
        shift: causal shift; None shifts 3-D inputs only.
        ignore_index: unsupervised label value.
        weights: optional ``[B, T]`` / ``[N]`` float per-token weights, aligned with ``labels``.
    """
    labels = check_index(labels, "labels")
    if labels.shape != rows_shape:
        layout = "[B, T]" if len(rows_shape) == 2 else "[N]"
        raise ValueError(
            f"labels: expected shape {tuple(rows_shape)} {layout} matching {inputs_name}, got {tuple(labels.shape)}"
        )
    if labels.device != device:
        raise ValueError(f"labels: expected a tensor on {device} (the device of {inputs_name}), got {labels.device}")
    labels = labels.long()  # any integer dtype (uint8 cannot even hold -100); gather wants int64
    valid = labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= num_classes))
    _check_on_device(
        ~bad.any(), f"labels: expected class indices in [0, {num_classes}) or ignore_index={ignore_index}"
    )
    if weights is not None:
        weights = check_float(weights, "weights")
        if weights.shape != labels.shape:
            raise ValueError(f"weights: expected shape {tuple(labels.shape)} (same as labels), got {tuple(weights.shape)}")
        check_same_device(labels=labels, weights=weights)
    do_shift = len(rows_shape) == 2 if shift is None else shift
    if do_shift:
        labels = _shifted(labels, ignore_index)
        valid = labels != ignore_index
        weights = None if weights is None else _shifted(weights, 0.0)
    index = torch.where(valid, labels, torch.zeros_like(labels)).reshape(-1)
    flat_weights = None if weights is None else weights.reshape(-1)
    return FlatLabels(Targets(index, valid.reshape(-1)), flat_weights, labels.shape)


def check_num_items(num_items_in_batch: object, device: torch.device) -> Tensor | None:
    """Validate ``num_items_in_batch``; return it as a 0-d tensor on ``device``.

    Accepted: a positive int, or a one-element integer or floating tensor (transformers
    >= 5 passes the token count divided by the context/sequence-parallel sizes as a float
    tensor). Rejected: bool, Python floats, complex, several values, a count <= 0.
    """
    if num_items_in_batch is None:
        return None
    name = "num_items_in_batch"
    if isinstance(num_items_in_batch, Tensor):
        if num_items_in_batch.is_complex() or num_items_in_batch.dtype == torch.bool:
            raise TypeError(f"{name}: expected an integer or floating tensor, got dtype {num_items_in_batch.dtype}")
        if num_items_in_batch.numel() != 1:
            raise ValueError(f"{name}: expected one value, got shape {tuple(num_items_in_batch.shape)}")
        count = num_items_in_batch.reshape(()).to(device)
    elif isinstance(num_items_in_batch, numbers.Integral) and not isinstance(num_items_in_batch, bool):
        count = torch.tensor(int(num_items_in_batch), device=device)
    else:
        raise TypeError(f"{name}: expected a positive int or a one-element tensor, got {num_items_in_batch!r}")
    _check_on_device(count > 0, f"{name}: expected a positive count of supervised tokens, got {num_items_in_batch}")
    return count
