"""Example inputs and bench sizes of ``token_ce`` and ``linear_token_ce`` (``losskit bench``,
the conformance kit): ``[B, T]`` labels with a masked prompt-like prefix and holes."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

import losskit

__all__ = ["IGNORE_INDEX", "LINEAR_TOKEN_CE_SIZES", "TOKEN_CE_SIZES", "linear_token_ce_inputs", "token_ce_inputs"]

IGNORE_INDEX = -100


def _labels(b: int, t: int, v: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``[B, T]`` labels in ``[0, V)`` with about a third masked by -100 (a prompt-like prefix and holes)."""
    labels = torch.randint(0, v, (b, t), generator=generator)
    labels[:, : max(1, t // 4)] = IGNORE_INDEX
    holes = torch.rand(b, t, generator=generator) < 0.1
    return labels.masked_fill(holes, IGNORE_INDEX).to(device)


def token_ce_inputs(
    size: Mapping[str, int], *, dtype: torch.dtype, device: torch.device, generator: torch.Generator
) -> losskit.Inputs:
    """``logits [B, T, V]`` (differentiated) and ``labels [B, T]`` with -100 holes."""
    b, t, v = size["B"], size["T"], size["V"]
    logits = (2 * torch.randn(b, t, v, generator=generator, dtype=dtype)).to(device).requires_grad_(True)
    return losskit.Inputs((logits, _labels(b, t, v, generator, device)), {})



def linear_token_ce_inputs(
    size: Mapping[str, int], *, dtype: torch.dtype, device: torch.device, generator: torch.Generator
) -> losskit.Inputs:
    """``hidden [B, T, H]`` and LM head ``weight [V, H]`` (both differentiated), ``labels [B, T]``."""
    b, t, h, v = size["B"], size["T"], size["H"], size["V"]
    hidden = torch.randn(b, t, h, generator=generator, dtype=dtype).to(device).requires_grad_(True)
    weight = (torch.randn(v, h, generator=generator, dtype=dtype) * h**-0.5).to(device).requires_grad_(True)
    return losskit.Inputs((hidden, weight, _labels(b, t, v, generator, device)), {})



#: ``large`` is one 2048-token sequence over Qwen2's vocabulary (1.2 GB of fp32 logits);
#: ``xl`` is GPU scale: 16384 tokens (5 GB of bf16 logits; ``losskit bench --device cuda --size xl``).
TOKEN_CE_SIZES = {
    "tiny": {"B": 2, "T": 4, "V": 5},
    "small": {"B": 4, "T": 128, "V": 4096},
    "medium": {"B": 2, "T": 512, "V": 32000},
    "large": {"B": 1, "T": 2048, "V": 151936},
    "xl": {"B": 1, "T": 16384, "V": 151936},
}

#: ``large`` is Qwen2-0.5B's LM head (H = 896, V = 151936) over 2048 tokens; ``xl`` the
#: same head over 16384 tokens (GPU scale).
LINEAR_TOKEN_CE_SIZES = {
    "tiny": {"B": 2, "T": 3, "H": 4, "V": 5},
    "small": {"B": 4, "T": 128, "H": 256, "V": 4096},
    "medium": {"B": 2, "T": 512, "H": 512, "V": 32000},
    "large": {"B": 1, "T": 2048, "H": 896, "V": 151936},
    "xl": {"B": 1, "T": 16384, "H": 896, "V": 151936},
}
