"""Example inputs and bench sizes of ``token_box`` / ``linear_token_box`` (``losskit bench``, the
conformance kit): labels in the default toy layout (digits 0-9 = ids 0-9, box start 10, end 11)
holding Qwen2-VL-style boxes ``<start>x1,y1,x2,y2<end>`` between random text tokens."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

import losskit

__all__ = ["LINEAR_SIZES", "SIZES", "box_labels", "linear_token_box_inputs", "token_box_inputs"]

IGNORE_INDEX = -100
_START, _END, _TEXT = 10, 11, 12  # ids of the default config; text tokens are >= 12


def _box_tokens(generator: torch.Generator, high: int) -> list[int]:
    """One box ``<start> x1 , y1 , x2 , y2 <end>`` with sorted corners in ``[0, high]``, digit by digit."""
    xs = sorted(torch.randint(0, high + 1, (2,), generator=generator).tolist())
    ys = sorted(torch.randint(0, high + 1, (2,), generator=generator).tolist())
    tokens = [_START]
    for i, number in enumerate((xs[0], ys[0], xs[1], ys[1])):
        tokens += [int(c) for c in str(number)] + ([_TEXT] if i < 3 else [])
    return tokens + [_END]


def box_labels(b: int, t: int, v: int, generator: torch.Generator, high: int = 1000) -> Tensor:
    """``[B, T]`` labels: an ignored first token, then boxes (corners in ``[0, high]``) separated by
    0-3 random text tokens."""
    labels = torch.randint(_TEXT, max(v, _TEXT + 1), (b, t), generator=generator)
    labels[:, 0] = IGNORE_INDEX
    for row in range(b):
        pos = 1
        while True:
            pos += int(torch.randint(0, 4, (1,), generator=generator))
            box = _box_tokens(generator, high)
            if pos + len(box) > t:
                break
            labels[row, pos : pos + len(box)] = torch.tensor(box)
            pos += len(box)
    return labels


def token_box_inputs(
    size: Mapping[str, int], *, dtype: torch.dtype, device: torch.device, generator: torch.Generator
) -> losskit.Inputs:
    """``logits [B, T, V]`` (differentiated) and ``labels [B, T]``; ``size["C"]`` (default 1000) is the
    largest coordinate written, so each row holds at least one box when ``T >= 9 + 4 * len(str(C))``."""
    b, t, v = size["B"], size["T"], size["V"]
    logits = (2 * torch.randn(b, t, v, generator=generator, dtype=dtype)).to(device).requires_grad_(True)
    return losskit.Inputs((logits, box_labels(b, t, v, generator, size.get("C", 1000)).to(device)), {})


def linear_token_box_inputs(
    size: Mapping[str, int], *, dtype: torch.dtype, device: torch.device, generator: torch.Generator
) -> losskit.Inputs:
    """``hidden [B, T, H]``, LM head ``weight [V, H]`` (both differentiated) and ``labels [B, T]``."""
    b, t, h, v = size["B"], size["T"], size["H"], size["V"]
    hidden = torch.randn(b, t, h, generator=generator, dtype=dtype).to(device).requires_grad_(True)
    weight = (2 * torch.randn(v, h, generator=generator, dtype=dtype) * h**-0.5).to(device).requires_grad_(True)
    return losskit.Inputs((hidden, weight, box_labels(b, t, v, generator, size.get("C", 1000)).to(device)), {})


#: ``tiny`` holds one box per row (corners below 100, so gradcheck stays quick); ``large`` is Qwen2's vocabulary.
SIZES = {
    "tiny": {"B": 2, "T": 18, "V": 13, "C": 99},
    "small": {"B": 4, "T": 128, "V": 4096},
    "medium": {"B": 2, "T": 512, "V": 32000},
    "large": {"B": 1, "T": 2048, "V": 151936},
}

#: ``large`` is Qwen2-0.5B's LM head (H = 896, V = 151936) over 2048 tokens.
LINEAR_SIZES = {
    "tiny": {"B": 2, "T": 18, "H": 4, "V": 13, "C": 99},
    "small": {"B": 4, "T": 128, "H": 256, "V": 4096},
    "medium": {"B": 2, "T": 512, "H": 512, "V": 32000},
    "large": {"B": 1, "T": 2048, "H": 896, "V": 151936},
}
