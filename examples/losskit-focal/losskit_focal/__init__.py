"""Sigmoid focal loss as a third-party losskit plugin (Lin et al., 2017, "Focal Loss for
Dense Object Detection"; same formula and conventions as ``torchvision.ops.sigmoid_focal_loss``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from pydantic import Field

import losskit
from losskit.bench import BenchSpec
from losskit.checks import check_float, to_float32
from losskit.loss import reduce

__all__ = ["FocalConfig", "FocalLoss", "register_losses"]


class FocalConfig(losskit.LossConfig):
    """Configuration of :class:`FocalLoss`."""

    alpha: float | None = Field(
        0.25, ge=0.0, le=1.0, description="Weight of positives in [0, 1]; null disables the balancing."
    )
    gamma: float = Field(2.0, ge=0.0, le=10.0, description="Focusing exponent; 0 gives plain binary cross-entropy.")


class FocalLoss(losskit.Loss[FocalConfig]):
    """Sigmoid focal loss for dense binary / multi-label classification.

    Call: ``loss(logits [*], targets [*])`` with targets in [0, 1] of the same shape.
    ``reduction="none"`` returns the element-wise loss, like torchvision.
    """

    config_class = FocalConfig

    def compute(self, logits: torch.Tensor, targets: torch.Tensor) -> losskit.LossOutput:
        check_float(logits, "logits")
        check_float(targets, "targets")
        if targets.shape != logits.shape:
            raise ValueError(f"targets: expected shape {tuple(logits.shape)} (same as logits), got {tuple(targets.shape)}")
        x, y = to_float32(logits), to_float32(targets)
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        values = ce * (1 - p_t) ** self.config.gamma
        if self.config.alpha is not None:
            values = values * (self.config.alpha * y + (1 - self.config.alpha) * (1 - y))
        return losskit.LossOutput(
            loss=reduce(values, self.config.reduction),
            metrics={"mean_p_t": p_t.mean() if p_t.numel() else p_t.sum()},
        )


def example_inputs(
    size: Mapping[str, int], *, dtype: torch.dtype, device: torch.device, generator: torch.Generator
) -> losskit.Inputs:
    """Logits ``[N, C]`` (differentiated) and binary targets ``[N, C]``."""
    n, c = size["N"], size["C"]
    logits = torch.randn(n, c, generator=generator, dtype=dtype).to(device).requires_grad_(True)
    targets = (torch.rand(n, c, generator=generator) < 0.3).to(dtype=dtype, device=device)
    return losskit.Inputs((logits, targets), {})


def _torchvision_focal(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    from torchvision.ops import sigmoid_focal_loss

    return sigmoid_focal_loss(logits, targets, reduction="mean")


@losskit.hookimpl
def register_losses(register):
    """Register ``focal``."""
    register(
        "focal",
        FocalLoss,
        config=FocalConfig,
        bench=BenchSpec(
            example_inputs=example_inputs,
            sizes={
                "tiny": {"N": 5, "C": 3},
                "small": {"N": 4096, "C": 80},
                "medium": {"N": 65536, "C": 80},
                "large": {"N": 262144, "C": 80},
            },
            baselines={"torchvision.sigmoid_focal_loss": _torchvision_focal},
        ),
    )
