"""Example inputs and bench sizes of the contrastive losses (``losskit bench``, the conformance kit)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

import losskit

__all__ = ["PAIR_SIZES", "QUERY_SIZES", "pair_inputs", "query_key_inputs"]


def _features(n: int, d: int, *, dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(n, d, generator=generator, dtype=torch.float32).to(dtype=dtype, device=device).requires_grad_(True)


def pair_inputs(
    size: Mapping[str, int], *, dtype: torch.dtype, device: torch.device, generator: torch.Generator
) -> losskit.Inputs:
    """``image_features [B, D]`` and ``text_features [B, D]`` (both differentiated);
    text is a noisy copy of the image so the pairs match."""
    img = _features(size["B"], size["D"], dtype=dtype, device=device, generator=generator)
    noise = torch.randn(size["B"], size["D"], generator=generator).to(dtype=dtype, device=device)
    txt = (img.detach() + noise).requires_grad_(True)
    return losskit.Inputs((img, txt), {})


def query_key_inputs(
    size: Mapping[str, int], *, dtype: torch.dtype, device: torch.device, generator: torch.Generator
) -> losskit.Inputs:
    """``query [B, D]``, ``positive_key [B, D]`` and shared ``negative_keys [M, D]``."""
    (q, k), _ = pair_inputs(size, dtype=dtype, device=device, generator=generator)
    negs = _features(size.get("M", 4), size["D"], dtype=dtype, device=device, generator=generator)
    return losskit.Inputs((q, k, negs), {})


PAIR_SIZES = {
    "tiny": {"B": 5, "D": 4},
    "small": {"B": 256, "D": 128},
    "medium": {"B": 1024, "D": 256},
    "large": {"B": 4096, "D": 512},
}
QUERY_SIZES = {
    "tiny": {"B": 4, "D": 3, "M": 3},
    "small": {"B": 256, "D": 128, "M": 256},
    "medium": {"B": 1024, "D": 256, "M": 1024},
    "large": {"B": 4096, "D": 512, "M": 4096},
}
