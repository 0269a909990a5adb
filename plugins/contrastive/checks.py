"""Input checks and preparation shared by ``clip``, ``siglip`` and ``infonce``."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor

from losskit.checks import (
    InputChecks,
    check_finite,
    check_float,
    check_index,
    check_same_device,
    check_size,
    to_float32,
    value_checks_enabled,
)

__all__ = ["check_features", "check_group_ids", "check_values", "no_autocast", "prepare"]


def check_features(a: object, b: object, name_a: str, name_b: str) -> tuple[Tensor, Tensor]:
    """Check two ``[B, D]`` float feature matrices of one shape on one device; return them.
    An empty batch (``B = 0``) is valid: the losses return a zero connected to the graph."""
    check_float(a, name_a, 2, layout="[B, D]")
    check_float(b, name_b, 2, layout="[B, D]")
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    check_same_device(**{name_a: a, name_b: b})  # first: before anything runs on the data
    check_size(b, name_b, 0, a.shape[0], f"the batch size of {name_a}")
    check_size(b, name_b, 1, a.shape[1], f"the feature dim of {name_a}")
    return a, b


def check_group_ids(group_ids: object, n: int, device: torch.device) -> Tensor | None:
    """Check optional ``group_ids [B]`` (integer); return them as int64 on ``device``."""
    if group_ids is None:
        return None
    check_index(group_ids, "group_ids", 1, layout="[B]")
    assert isinstance(group_ids, Tensor)
    check_size(group_ids, "group_ids", 0, n, "the batch size")
    check_same_device(features=torch.empty(0, device=device), group_ids=group_ids)
    return group_ids.long()


def prepare(t: Tensor, dtype: torch.dtype, *, keep_half: bool = False) -> Tensor:
    """Cast to the compute ``dtype`` (fp16/bf16 -> fp32; ``keep_half``: fp16/bf16 stay as they are,
    for the fused Triton kernels, which accumulate in fp32). L2 normalisation happens where the
    features are consumed (fused into the engine, so no normalised copy's gradient is kept)."""
    return t if keep_half else to_float32(t).to(dtype)


def no_autocast(first: Tensor) -> AbstractContextManager[object]:
    """Autocast off on the (checked) inputs' device: logits are formed in fp32 even inside
    ``torch.autocast`` regions (fp16/bf16 features are upcast by :func:`prepare`). A device
    without autocast (``meta``) needs nothing."""
    kind = first.device.type
    return torch.autocast(device_type=kind, enabled=False) if torch.amp.is_autocast_available(kind) else nullcontext()


def check_values(mode: InputChecks, **tensors: Tensor | None) -> None:
    """The checks that read the data, under the input policy ``mode`` (``check_inputs``):
    float tensors must be finite (:func:`losskit.checks.check_finite`); an integer
    ``positive_mask`` must hold only 0 and 1 (when they run: :func:`losskit.checks.value_checks_enabled`)."""
    first = next((t for t in tensors.values() if t is not None), None)
    if first is None or not value_checks_enabled(mode, first.device):
        return
    check_finite(**tensors)
    mask = tensors.get("positive_mask")
    if mask is not None and mask.dtype != torch.bool and mask.numel() and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"positive_mask: expected 0/1 (or bool) entries, got values in [{int(mask.min())}, {int(mask.max())}]")
