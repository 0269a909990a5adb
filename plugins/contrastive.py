"""Bundled losskit plugin ``contrastive``: ``clip``, ``siglip`` and ``infonce``.

Registered through the ``losskit`` entry-point group like any third-party plugin.
The losses live in ``contrastive_clip``, ``contrastive_siglip`` and
``contrastive_infonce``; the shared math in ``contrastive_engine`` (exact dense/tiled
kernel), ``contrastive_softmax`` and ``contrastive_common``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

import losskit
from losskit_plugins.contrastive_baselines import (
    dense_ce_clip,
    dense_siglip,
    info_nce_reference,
    open_clip_available,
    open_clip_clip,
    open_clip_siglip,
    three_matmul_floor,
)
from losskit_plugins.contrastive_clip import ClipLoss
from losskit_plugins.contrastive_config import ClipConfig, InfoNCEConfig, SiglipConfig
from losskit_plugins.contrastive_infonce import InfoNCELoss
from losskit_plugins.contrastive_siglip import SiglipLoss

__all__ = [
    "ClipConfig",
    "ClipLoss",
    "InfoNCEConfig",
    "InfoNCELoss",
    "SiglipConfig",
    "SiglipLoss",
    "pair_inputs",
    "query_key_inputs",
    "register_losses",
]


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


_PAIR_SIZES = {
    "tiny": {"B": 5, "D": 4},
    "small": {"B": 256, "D": 128},
    "medium": {"B": 1024, "D": 256},
    "large": {"B": 4096, "D": 512},
}
_QUERY_SIZES = {
    "tiny": {"B": 4, "D": 3, "M": 3},
    "small": {"B": 256, "D": 128, "M": 256},
    "medium": {"B": 1024, "D": 256, "M": 1024},
    "large": {"B": 4096, "D": 512, "M": 4096},
}


@losskit.hookimpl
def register_losses(register):
    """Register ``clip``, ``siglip`` and ``infonce``; ``clip`` and ``siglip`` get an ``open_clip``
    baseline when that optional package is installed."""
    with_open_clip = open_clip_available()
    register(
        "clip",
        ClipLoss,
        config=ClipConfig,
        example_inputs=pair_inputs,
        sizes=_PAIR_SIZES,
        baselines={
            "dense_ce": dense_ce_clip,
            "three_matmul_floor": three_matmul_floor,
            **({"open_clip": open_clip_clip} if with_open_clip else {}),
        },
    )
    register(
        "siglip",
        SiglipLoss,
        config=SiglipConfig,
        example_inputs=pair_inputs,
        sizes=_PAIR_SIZES,
        baselines={
            "dense_siglip": dense_siglip,
            "three_matmul_floor": three_matmul_floor,
            **({"open_clip": open_clip_siglip} if with_open_clip else {}),
        },
    )
    register(
        "infonce",
        InfoNCELoss,
        config=InfoNCEConfig,
        example_inputs=query_key_inputs,
        sizes=_QUERY_SIZES,
        baselines={"info_nce_pytorch_style": info_nce_reference},
    )
