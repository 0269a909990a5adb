"""Configuration models of the contrastive losses (``clip``, ``siglip``, ``infonce``).

Fields shared by all three live in :class:`ContrastiveConfig`; each loss adds its own.
Temperature convention (as in CLIP / open_clip): logits are ``logit_scale * cos_sim
(+ logit_bias)`` with ``logit_scale = 1 / temperature``, clamped to ``max_logit_scale``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

import losskit
from losskit.checks import CheckInputs
from losskit.kernels import KernelField

__all__ = ["ClipConfig", "ContrastiveConfig", "InfoNCEConfig", "SiglipConfig"]


class ContrastiveConfig(losskit.LossConfig):
    """Fields shared by every contrastive loss."""

    temperature: float = Field(
        0.07,
        gt=0.0,
        le=100.0,
        description="Softmax temperature; logit_scale = 1/temperature. With a learnable temperature this is "
        "the initial value (the parameter stores log(1/temperature)).",
    )
    learnable_temperature: bool = Field(
        True,
        description="Hold log(logit_scale) in an nn.Parameter (CLIP). False: use `temperature` as set in the "
        "config at each call (a curriculum may schedule it). Fixed at build time.",
    )
    max_logit_scale: float = Field(
        100.0, gt=0.0, le=1e4, description="logit_scale is clamped to at most this value inside forward (CLIP: 100)."
    )
    normalize: bool = Field(True, description="L2-normalise the features along the last dim before the dot products.")
    chunk_size: int | None = Field(
        None,
        ge=1,
        le=1 << 20,
        description="Rows per tile of the exact tiled path: at most O(B*chunk_size) logits are held in forward "
        "and backward. null: dense (one tile, saves the logit matrix for backward).",
    )
    distributed: Literal["none", "gather", "auto"] = Field(
        "auto",
        description="'gather': all-gather features (with gradient) from every rank; 'auto': gather when a "
        "torch.distributed process group with world size > 1 exists; 'none': local batch only.",
    )
    local_loss: bool = Field(
        False,
        description="With gathering: each rank computes only its own rows against all gathered columns "
        "(open_clip's local_loss); False: every rank computes the full global loss.",
    )
    check_inputs: CheckInputs = "auto"
    kernel: KernelField = "auto"  # the fused Triton kernels on CUDA (docs/scaling.md); chunk_size is then unused


class _SoftmaxConfig(ContrastiveConfig):
    """Options of the softmax (cross-entropy) losses ``clip`` and ``infonce``."""

    label_smoothing: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Mix the target with the uniform distribution over all columns of a row (torch "
        "cross_entropy's label_smoothing).",
    )
    hard_negative_beta: float = Field(
        0.0,
        ge=0.0,
        le=100.0,
        description="Robinson et al. 2021 hard-negative importance weight beta (0 = off); computed in log space.",
    )
    debias_tau_plus: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Chuang et al. 2020 debiased contrastive loss: class prior tau+ of a negative being a "
        "false negative (0 = off); computed in log space.",
    )

    @model_validator(mode="after")
    def _tiling_supports_options(self) -> _SoftmaxConfig:
        if self.chunk_size is not None and (self.hard_negative_beta > 0 or self.debias_tau_plus > 0):
            raise ValueError(
                "chunk_size: the tiled path does not support hard_negative_beta / debias_tau_plus; "
                "set chunk_size to null or turn them off"
            )
        return self


class ClipConfig(_SoftmaxConfig):
    """Configuration of ``clip`` (open_clip ``ClipLoss`` conventions)."""

    direction: Literal["both", "image_to_text", "text_to_image"] = Field(
        "both", description="'both': mean of image->text and text->image cross-entropy (CLIP)."
    )
    logit_bias: float | None = Field(
        None, ge=-1e4, le=1e4, description="Initial logit bias added to every logit; null: no bias."
    )
    learnable_bias: bool = Field(
        True, description="With logit_bias set: hold the bias in an nn.Parameter (else it is read from the config)."
    )


class SiglipConfig(ContrastiveConfig):
    """Configuration of ``siglip`` (open_clip ``SigLipLoss`` conventions: scale 10, bias -10)."""

    temperature: float = Field(
        0.1, gt=0.0, le=100.0, description="Initial temperature; logit_scale = 1/temperature (SigLIP: 10)."
    )
    logit_bias: float = Field(-10.0, ge=-1e4, le=1e4, description="Initial logit bias (SigLIP: -10).")
    learnable_bias: bool = Field(True, description="Hold the bias in an nn.Parameter (else it is read from the config).")


class InfoNCEConfig(_SoftmaxConfig):
    """Configuration of ``infonce`` (info-nce-pytorch conventions: temperature 0.1, fixed)."""

    temperature: float = Field(
        0.1, gt=0.0, le=100.0, description="Softmax temperature (info-nce-pytorch default 0.1)."
    )
    learnable_temperature: bool = Field(
        False, description="Hold log(1/temperature) in an nn.Parameter; default fixed, read at each call."
    )
    in_batch_negatives: bool = Field(
        True, description="Use the other positive keys of the batch as negatives (in the same denominator as negative_keys)."
    )
    symmetric: bool = Field(
        False, description="Also add the key->query direction of the in-batch part and average both."
    )
    exclude_self: bool = Field(
        False,
        description="Queries and keys are the same set (SimCLR / NT-Xent, pytorch-metric-learning's NTXentLoss): "
        "the (i, i) pair is neither a positive nor a negative. Needs group_ids or positive_mask.",
    )

    @model_validator(mode="after")
    def _tiling_needs_in_batch(self) -> InfoNCEConfig:
        if self.chunk_size is not None and not self.in_batch_negatives:
            raise ValueError("chunk_size: tiling applies to the in-batch part; it needs in_batch_negatives=true")
        if self.chunk_size is not None and self.exclude_self:
            raise ValueError("chunk_size: the tiled path does not support exclude_self; set chunk_size to null")
        return self
