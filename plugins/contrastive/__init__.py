"""Bundled losskit plugin ``contrastive``: ``clip``, ``siglip`` and ``infonce``.

Registered through the ``losskit`` entry-point group like any third-party plugin.
The losses live in ``clip``, ``siglip`` and ``infonce``; the shared math in ``engine``
(exact dense/tiled kernel), ``softmax`` and ``pairs``; the learnable temperature/bias in
``base``, input checks in ``checks``, the cross-process layout in ``layout``, metrics in
``metrics``; ``cases`` and ``baselines`` serve ``losskit bench``.
"""

from __future__ import annotations

import losskit
from losskit.bench import BenchSpec
from losskit_plugins.contrastive.baselines import (
    dense_ce_clip,
    dense_siglip,
    info_nce_reference,
    open_clip_available,
    open_clip_clip,
    open_clip_siglip,
    three_matmul_floor,
)
from losskit_plugins.contrastive.cases import PAIR_SIZES, QUERY_SIZES, pair_inputs, query_key_inputs
from losskit_plugins.contrastive.clip import ClipLoss
from losskit_plugins.contrastive.config import ClipConfig, InfoNCEConfig, SiglipConfig
from losskit_plugins.contrastive.infonce import InfoNCELoss
from losskit_plugins.contrastive.siglip import SiglipLoss

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


@losskit.hookimpl
def register_losses(register):
    """Register ``clip``, ``siglip`` and ``infonce``; ``clip`` and ``siglip`` get an ``open_clip``
    baseline when that optional package is installed."""
    with_open_clip = open_clip_available()
    register(
        "clip",
        ClipLoss,
        config=ClipConfig,
        bench=BenchSpec(
            example_inputs=pair_inputs,
            sizes=PAIR_SIZES,
            baselines={
                "dense_ce": dense_ce_clip,
                "three_matmul_floor": three_matmul_floor,
                **({"open_clip": open_clip_clip} if with_open_clip else {}),
            },
        ),
    )
    register(
        "siglip",
        SiglipLoss,
        config=SiglipConfig,
        bench=BenchSpec(
            example_inputs=pair_inputs,
            sizes=PAIR_SIZES,
            baselines={
                "dense_siglip": dense_siglip,
                "three_matmul_floor": three_matmul_floor,
                **({"open_clip": open_clip_siglip} if with_open_clip else {}),
            },
        ),
    )
    register(
        "infonce",
        InfoNCELoss,
        config=InfoNCEConfig,
        bench=BenchSpec(
            example_inputs=query_key_inputs, sizes=QUERY_SIZES, baselines={"info_nce_pytorch_style": info_nce_reference}
        ),
    )
