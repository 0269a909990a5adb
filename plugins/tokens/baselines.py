"""Reference implementations ``losskit bench`` times ``token_ce`` and ``linear_token_ce`` against:
Hugging Face's ``ForCausalLMLoss`` recipe, plain ``F.cross_entropy`` and the LM head's matmul floor."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from losskit.bench.floors import three_matmul_floor
from losskit_plugins.tokens.cases import IGNORE_INDEX

__all__ = [
    "lm_head_matmul_floor",
    "plain_cross_entropy",
    "plain_linear_cross_entropy",
    "transformers_style_ce",
    "transformers_style_linear_ce",
]


def _causal_targets(labels: Tensor) -> Tensor:
    return F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].reshape(-1)


def transformers_style_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Hugging Face ``ForCausalLMLoss``: upcast to float, shift the labels, mean cross-entropy."""
    logits = logits.float()
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), _causal_targets(labels), ignore_index=IGNORE_INDEX)


def plain_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """``F.cross_entropy`` on the same logits and (unshifted) labels: the floor to beat."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)


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
    logits' gradient. Its value is 0. It is :func:`~losskit.bench.floors.three_matmul_floor`
    applied to ``(hidden, weight)``: no softmax, no loss, so ratios to it show the cost above the matmuls.
    """
    return three_matmul_floor(hidden.reshape(-1, hidden.shape[-1]), weight)
