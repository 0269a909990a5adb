"""Example inputs of ``bbox`` (``losskit bench``, the conformance kit) and its bench sizes."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

import losskit

__all__ = ["SIZES", "example_inputs"]

SIZES = {"tiny": {"N": 5}, "small": {"N": 10_000}, "medium": {"N": 100_000}, "large": {"N": 1_000_000}}


def example_inputs(
    size: Mapping[str, int], *, dtype: torch.dtype, device: torch.device, generator: torch.Generator
) -> losskit.Inputs:
    """``pred [N, 4]`` (differentiated) and ``target [N, 4]``: overlapping, valid boxes.

    Corners lie in [0, 1] with sides in [0.05, 0.55] (well away from zero, so
    fp16 rounding keeps them valid and gradcheck steps stay smooth). All four numbers
    are positive, so the same tensors are valid boxes in every ``box_format``.
    """
    n = size["N"]

    def draw() -> Tensor:
        xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 0.45
        wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 0.5 + 0.05
        return torch.cat((xy, xy + wh), 1)  # [N, 4] xyxy

    pred = draw().to(dtype=dtype, device=device).requires_grad_(True)
    target = draw().to(dtype=dtype, device=device)
    return losskit.Inputs((pred, target), {})
