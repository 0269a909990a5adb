"""Configs of ``token_ce`` and ``linear_token_ce``."""

from __future__ import annotations

from pydantic import Field

import losskit
from losskit.checks import CheckInputs
from losskit.kernels import KernelField

__all__ = ["LinearTokenCEConfig", "TokenCEConfig"]

_INT64 = 2**63 - 1


class _TokenFields(losskit.LossConfig):
    """The fields both token losses share (Hugging Face ``ForCausalLMLoss`` conventions)."""

    ignore_index: int = Field(
        -100, ge=-_INT64, le=_INT64, description="Label value that is not supervised (prompt, padding, image tokens)."
    )
    shift: bool | None = Field(
        None,
        description=(
            "Causal shift: position t predicts labels[t+1] (labels padded with ignore_index on the right). "
            "null: shift 3-D inputs [B, T, ...], not 2-D [N, ...]."
        ),
    )
    label_smoothing: float = Field(
        0.0, ge=0.0, le=1.0, description="Label smoothing eps in [0, 1], as in torch.nn.functional.cross_entropy."
    )
    z_loss: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="PaLM z-loss coefficient: adds z_loss * (log Z)^2 per supervised token (part 'z_loss'); 0 disables.",
    )
    softcap: float | None = Field(
        None,
        gt=0.0,
        description="Final-logit soft cap c (Gemma 2: 30.0): logits become c * tanh(logits / c) before the loss; null: none.",
    )
    kernel: KernelField = "auto"
    check_inputs: CheckInputs = "auto"


class TokenCEConfig(_TokenFields):
    """Configuration of ``token_ce``."""

    in_place: bool = Field(
        False,
        description=(
            "Triton path only: write the logits' gradient into the logits tensor itself (saves one [N, V] "
            "buffer; the logits are overwritten by the forward pass and must not be used afterwards)."
        ),
    )


class LinearTokenCEConfig(_TokenFields):
    """Configuration of ``linear_token_ce``: the shared fields plus the chunk size."""

    chunk_size: int | None = Field(
        None,
        ge=1,
        le=1 << 20,
        description=(
            "Tokens per chunk of logits; null splits the tokens evenly into chunks of at most 48 * 2^20 / V tokens "
            "(192 MiB in fp32) on the PyTorch path, 2^28 / V tokens (512 MiB in bf16) on the Triton path."
        ),
    )
