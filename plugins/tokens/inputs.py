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

from losskit.checks import (
    InputChecks,
    check_finite,
    check_float,
    check_index,
    check_same_device,
    check_size,
    value_checks_enabled,
)

from losskit_plugins.tokens.kernels import Targets

__all__ = ["FlatLabels", "check_class_weights", "check_head", "check_logits_by_lse", "check_logit_values", "check_num_items", "flat_labels", "flat_rows"]


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
    """``x [B, T, F]`` or ``[N, F]`` as ``[N, F]`` (a view when ``x`` is contiguous); ``F`` >= 1."""
    check_float(x, name, (2, 3), layout=layout)
    if x.shape[-1] == 0:
        raise ValueError(f"{name}: expected a last dimension of at least 1 in {layout}, got shape {tuple(x.shape)}")
    return x.reshape(-1, x.shape[-1])


def check_logit_values(mode: InputChecks, **tensors: Tensor | None) -> None:
    """Under the input policy, raise ``ValueError`` naming the argument holding NaN or +inf.

    ``-inf`` is allowed: it is how a masked vocabulary (constrained decoding, padded
    vocabularies) is written, and the loss handles it like ``F.cross_entropy``.
    """
    for name, t in tensors.items():
        if t is None or not value_checks_enabled(mode, t.device):
            continue
        bad = torch.isnan(t) | (t == float("inf"))
        if bool(bad.any()):
            where = tuple(int(i) for i in torch.nonzero(bad)[0].tolist())
            raise ValueError(
                f"{name}: expected finite values or -inf (a masked class), got {t[where].item()} at index {where}"
            )


def check_head(hidden: Tensor, weight: Tensor, bias: Tensor | None, mode: InputChecks) -> Tensor:
    """Check ``hidden [B, T, H] / [N, H]``, ``weight [V, H]`` (V >= 1), ``bias [V]``; return hidden as ``[N, H]``."""
    rows = flat_rows(hidden, "hidden", "[B, T, H] or [N, H]")
    check_float(weight, "weight", 2, layout="[V, H]")
    check_size(weight, "weight", 1, hidden.shape[-1], "the hidden size H of hidden")
    if weight.shape[0] == 0:
        raise ValueError(f"weight: expected a vocabulary of at least 1 class in [V, H], got shape {tuple(weight.shape)}")
    if bias is not None:
        check_float(bias, "bias", 1, layout="[V]")
        check_size(bias, "bias", 0, weight.shape[0], "the vocabulary size V of weight")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.device != hidden.device:
            raise ValueError(f"{name}: expected a tensor on {hidden.device} (the device of hidden), got {t.device}")
    if value_checks_enabled(mode, hidden.device):
        check_finite(hidden=hidden, weight=weight)
    check_logit_values(mode, bias=bias)
    return rows


def check_logits_by_lse(mode: InputChecks, lse: Tensor, logits: Tensor) -> None:
    """:func:`check_logit_values` for ``logits`` at the cost of a look at their rows' log Z ``[N]``.

    NaN or ``+inf`` in a row makes its log-sum-exp NaN or ``+inf``, so the full scan of the
    ``[N, V]`` logits (one more pass over them) runs only when that happens, to name the entry.
    """
    if value_checks_enabled(mode, lse.device) and bool((~(lse < float("inf"))).any()):
        check_logit_values(mode, logits=logits)


def check_class_weights(class_weights: object, num_classes: int, device: torch.device, mode: InputChecks, dtype: torch.dtype) -> Tensor | None:
    """``class_weights [V]`` (``F.cross_entropy``'s ``weight``): float, on ``device``, finite and >= 0; returned in ``dtype``."""
    if class_weights is None:
        return None
    w = check_float(class_weights, "class_weights", 1, layout="[V]")
    if w.shape[0] != num_classes:
        raise ValueError(f"class_weights: expected shape ({num_classes},) [V], got {tuple(w.shape)}")
    if w.device != device:
        raise ValueError(f"class_weights: expected a tensor on {device} (the device of the inputs), got {w.device}")
    if value_checks_enabled(mode, device):
        check_finite(class_weights=w)
        if bool((w < 0).any()):
            raise ValueError("class_weights: expected non-negative weights")
    return w.detach().to(dtype)


def _shifted(t: Tensor, fill: float | int) -> Tensor:
    return F.pad(t, (0, 1), value=fill)[..., 1:]


def _check_value(ok: Tensor, message: str, mode: InputChecks) -> None:
    """Raise ``ValueError(message)`` unless ``ok``, when the input policy reads values on its device."""
    if value_checks_enabled(mode, ok.device) and not bool(ok):
        raise ValueError(message)


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
    check_inputs: InputChecks = "auto",
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
        check_inputs: the input policy for the label range and the weights' values.
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
    _check_value(
        ~bad.any(), f"labels: expected class indices in [0, {num_classes}) or ignore_index={ignore_index}", check_inputs
    )
    if weights is not None:
        weights = check_float(weights, "weights")
        if weights.shape != labels.shape:
            raise ValueError(f"weights: expected shape {tuple(labels.shape)} (same as labels), got {tuple(weights.shape)}")
        check_same_device(labels=labels, weights=weights)
        if value_checks_enabled(check_inputs, weights.device):
            check_finite(weights=weights)
    do_shift = len(rows_shape) == 2 if shift is None else shift
    if do_shift:
        labels = _shifted(labels, ignore_index)
        valid = labels != ignore_index
        weights = None if weights is None else _shifted(weights, 0.0)
    index = torch.where(valid, labels, torch.zeros_like(labels)).reshape(-1)
    flat_weights = None if weights is None else weights.reshape(-1)
    return FlatLabels(Targets(index, valid.reshape(-1)), flat_weights, labels.shape)


def check_num_items(num_items_in_batch: object, device: torch.device, check_inputs: InputChecks = "auto") -> Tensor | None:
    """Validate ``num_items_in_batch``; return it as a 0-d tensor on ``device``.

    Accepted: a positive int, or a one-element integer or floating tensor (transformers
    >= 5 passes the token count divided by the context/sequence-parallel sizes as a float
    tensor) on ``device`` or on the CPU (moved, as transformers does). Rejected: bool,
    Python floats, complex, several values, another device, and (under the input policy,
    read where the tensor lives) a count that is not finite and positive.
    """
    if num_items_in_batch is None:
        return None
    name = "num_items_in_batch"
    if isinstance(num_items_in_batch, Tensor):
        if num_items_in_batch.is_complex() or num_items_in_batch.dtype == torch.bool:
            raise TypeError(f"{name}: expected an integer or floating tensor, got dtype {num_items_in_batch.dtype}")
        if num_items_in_batch.numel() != 1:
            raise ValueError(f"{name}: expected one value, got shape {tuple(num_items_in_batch.shape)}")
        if num_items_in_batch.device not in (device, torch.device("cpu")):
            raise ValueError(
                f"{name}: expected a tensor on {device} (the device of the inputs) or on cpu, "
                f"got {num_items_in_batch.device}"
            )
        count = num_items_in_batch.reshape(())
    elif isinstance(num_items_in_batch, numbers.Integral) and not isinstance(num_items_in_batch, bool):
        count = torch.tensor(int(num_items_in_batch))
    else:
        raise TypeError(f"{name}: expected a positive int or a one-element tensor, got {num_items_in_batch!r}")
    ok = (count > 0) & torch.isfinite(count)
    _check_value(ok, f"{name}: expected a finite positive count of supervised tokens, got {num_items_in_batch}", check_inputs)
    return count.to(device, non_blocking=True)
