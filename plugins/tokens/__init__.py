"""Bundled losskit plugin ``tokens``: next-token cross-entropy for (multimodal) LLM training.

Registers ``token_ce`` (over logits) and ``linear_token_ce`` (fused LM head + cross-entropy
that never materialises the logits), with example inputs, bench sizes (``large`` is
Qwen2's vocabulary, V = 151936) and the baselines ``losskit bench`` times them against
(for ``linear_token_ce`` also the three-matmul floor of the LM head). Also exports the
label-masking helpers for vision tokens.
"""

from __future__ import annotations

import losskit
from losskit.bench import BenchSpec
from losskit_plugins.tokens.baselines import (
    lm_head_matmul_floor,
    plain_cross_entropy,
    plain_linear_cross_entropy,
    transformers_style_ce,
    transformers_style_linear_ce,
)
from losskit_plugins.tokens.cases import LINEAR_TOKEN_CE_SIZES, TOKEN_CE_SIZES, linear_token_ce_inputs, token_ce_inputs
from losskit_plugins.tokens.ce import TokenCELoss
from losskit_plugins.tokens.config import LinearTokenCEConfig, TokenCEConfig
from losskit_plugins.tokens.linear import LinearTokenCELoss
from losskit_plugins.tokens.mask import (
    QWEN2_VL_VISION_TOKEN_IDS,
    mask_tokens,
    vision_span_mask,
    vision_span_violations,
)

__all__ = [
    "LinearTokenCEConfig",
    "LinearTokenCELoss",
    "QWEN2_VL_VISION_TOKEN_IDS",
    "TokenCEConfig",
    "TokenCELoss",
    "lm_head_matmul_floor",
    "mask_tokens",
    "transformers_style_ce",
    "transformers_style_linear_ce",
    "register_losses",
    "vision_span_mask",
    "vision_span_violations",
]


@losskit.hookimpl
def register_losses(register):
    """Register ``token_ce`` and ``linear_token_ce``."""
    register(
        "token_ce",
        TokenCELoss,
        config=TokenCEConfig,
        bench=BenchSpec(
            example_inputs=token_ce_inputs,
            sizes=TOKEN_CE_SIZES,
            throughput_keys=("B", "T"),
            throughput_unit="tokens",
            baselines={"transformers_style": transformers_style_ce, "F.cross_entropy": plain_cross_entropy},
        ),
    )
    register(
        "linear_token_ce",
        LinearTokenCELoss,
        config=LinearTokenCEConfig,
        bench=BenchSpec(
            example_inputs=linear_token_ce_inputs,
            sizes=LINEAR_TOKEN_CE_SIZES,
            throughput_keys=("B", "T"),
            throughput_unit="tokens",
            baselines={
                "transformers_style": transformers_style_linear_ce,
                "F.cross_entropy": plain_linear_cross_entropy,
                "three_matmul_floor": lm_head_matmul_floor,
            },
        ),
    )
