"""Bundled losskit plugin ``tokens``: next-token cross-entropy for (multimodal) LLM training.

Registers ``token_ce`` (over logits) and ``linear_token_ce`` (fused LM head + cross-entropy
that never materialises the logits), with example inputs, bench sizes (``large`` is
Qwen2's vocabulary, V = 151936) and the baselines ``losskit bench`` times them against
(for ``linear_token_ce`` also the three-matmul floor of the LM head). Also exports the
label-masking helpers for vision tokens.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

import losskit

from losskit_plugins.matmul_floor import three_matmul_floor
from losskit_plugins.tokens_ce import TokenCELoss
from losskit_plugins.tokens_config import LinearTokenCEConfig, TokenCEConfig
from losskit_plugins.tokens_linear import LinearTokenCELoss
from losskit_plugins.tokens_mask import (
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
    "register_losses",
    "vision_span_mask",
    "vision_span_violations",
]

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


def _causal_targets(labels: Tensor) -> Tensor:
    return F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].reshape(-1)


def transformers_style_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Hugging Face ``ForCausalLMLoss``: upcast to float, shift the labels, mean cross-entropy."""
    logits = logits.float()
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), _causal_targets(labels), ignore_index=IGNORE_INDEX)


def plain_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """``F.cross_entropy`` on the same logits and (unshifted) labels: the floor to beat."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)


def linear_token_ce_inputs(
    size: Mapping[str, int], *, dtype: torch.dtype, device: torch.device, generator: torch.Generator
) -> losskit.Inputs:
    """``hidden [B, T, H]`` and LM head ``weight [V, H]`` (both differentiated), ``labels [B, T]``."""
    b, t, h, v = size["B"], size["T"], size["H"], size["V"]
    hidden = torch.randn(b, t, h, generator=generator, dtype=dtype).to(device).requires_grad_(True)
    weight = (torch.randn(v, h, generator=generator, dtype=dtype) * h**-0.5).to(device).requires_grad_(True)
    return losskit.Inputs((hidden, weight, _labels(b, t, v, generator, device)), {})


def transformers_style_linear_ce(hidden: Tensor, weight: Tensor, labels: Tensor) -> Tensor:
    """LM head matmul (materialised ``[B, T, V]`` logits), then :func:`transformers_style_ce`."""
    return transformers_style_ce(F.linear(hidden, weight), labels)


def plain_linear_cross_entropy(hidden: Tensor, weight: Tensor, labels: Tensor) -> Tensor:
    """LM head matmul, then :func:`plain_cross_entropy`."""
    return plain_cross_entropy(F.linear(hidden, weight), labels)


def lm_head_matmul_floor(hidden: Tensor, weight: Tensor, labels: Tensor, **_: object) -> Tensor:
    """The three ``N x H x V`` products every exact LM-head loss needs, and nothing else.

    ``hidden [B, T, H] / [N, H]``, ``weight [V, H]``; ``labels`` are ignored. Forward
    computes the logits ``Z = hidden @ weight.T``; backward ``Z @ weight`` (the gradient
    of ``hidden``) and ``Z.T @ hidden`` (of ``weight``), with ``Z`` standing in for the
    logits' gradient. Its value is 0. It is :func:`~losskit_plugins.matmul_floor.three_matmul_floor`
    applied to ``(hidden, weight)``: no softmax, no loss, so ratios to it show the cost above the matmuls.
    """
    return three_matmul_floor(hidden.reshape(-1, hidden.shape[-1]), weight)


#: ``large`` is one 2048-token sequence over Qwen2's vocabulary (1.2 GB of fp32 logits).
TOKEN_CE_SIZES = {
    "tiny": {"B": 2, "T": 4, "V": 5},
    "small": {"B": 4, "T": 128, "V": 4096},
    "medium": {"B": 2, "T": 512, "V": 32000},
    "large": {"B": 1, "T": 2048, "V": 151936},
}

#: ``large`` is Qwen2-0.5B's LM head (H = 896, V = 151936) over 2048 tokens.
LINEAR_TOKEN_CE_SIZES = {
    "tiny": {"B": 2, "T": 3, "H": 4, "V": 5},
    "small": {"B": 4, "T": 128, "H": 256, "V": 4096},
    "medium": {"B": 2, "T": 512, "H": 512, "V": 32000},
    "large": {"B": 1, "T": 2048, "H": 896, "V": 151936},
}


@losskit.hookimpl
def register_losses(register):
    """Register ``token_ce`` and ``linear_token_ce``."""
    register(
        "token_ce",
        TokenCELoss,
        config=TokenCEConfig,
        example_inputs=token_ce_inputs,
        sizes=TOKEN_CE_SIZES,
        throughput_keys=("B", "T"),
        throughput_unit="tokens",
        baselines={"transformers_style": transformers_style_ce, "F.cross_entropy": plain_cross_entropy},
    )
    register(
        "linear_token_ce",
        LinearTokenCELoss,
        config=LinearTokenCEConfig,
        example_inputs=linear_token_ce_inputs,
        sizes=LINEAR_TOKEN_CE_SIZES,
        throughput_keys=("B", "T"),
        throughput_unit="tokens",
        baselines={
            "transformers_style": transformers_style_linear_ce,
            "F.cross_entropy": plain_linear_cross_entropy,
            "three_matmul_floor": lm_head_matmul_floor,
        },
    )
