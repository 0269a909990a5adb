"""Input checks and preparation shared by ``clip``, ``siglip`` and ``infonce``."""

from __future__ import annotations

import torch
from torch import Tensor

from losskit.checks import check_float, check_index, check_same_device, check_size, to_float32

__all__ = ["check_features", "check_group_ids", "no_autocast", "prepare"]


def check_features(a: object, b: object, name_a: str, name_b: str) -> tuple[Tensor, Tensor]:
    """Check two ``[B, D]`` float feature matrices of one shape; return them."""
    check_float(a, name_a, 2, layout="[B, D]")
    check_float(b, name_b, 2, layout="[B, D]")
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    if a.shape[0] == 0:
        raise ValueError(f"{name_a}: expected a batch of at least 1 sample, got shape {tuple(a.shape)}")
    check_size(b, name_b, 0, a.shape[0], f"the batch size of {name_a}")
    check_size(b, name_b, 1, a.shape[1], f"the feature dim of {name_a}")
    check_same_device(**{name_a: a, name_b: b})
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


def prepare(t: Tensor, dtype: torch.dtype) -> Tensor:
    """Cast to the compute ``dtype`` (fp16/bf16 -> fp32). L2 normalisation happens where the
    features are consumed (fused into the engine, so no normalised copy's gradient is kept)."""
    return to_float32(t).to(dtype)


def no_autocast(first: object) -> torch.autocast:
    """Autocast off on the inputs' device: logits are formed in fp32 even inside
    ``torch.autocast`` regions (fp16/bf16 features are upcast by :func:`prepare`)."""
    device_type = first.device.type if isinstance(first, Tensor) else "cpu"
    return torch.autocast(device_type=device_type, enabled=False)
