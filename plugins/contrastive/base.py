"""The base class of the contrastive losses: the learnable temperature (logit scale) and bias."""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

import losskit
from losskit import distributed as dist
from losskit.checks import compute_dtype
from losskit_plugins.contrastive.checks import check_features, check_group_ids, check_values, no_autocast, prepare
from losskit_plugins.contrastive.config import ContrastiveConfig
from losskit_plugins.contrastive.triton_dispatch import keeps_half_operands

__all__ = ["ContrastiveLoss", "PairContrastiveLoss"]

C = TypeVar("C", bound=ContrastiveConfig)


class ContrastiveLoss(losskit.Loss[C], Generic[C]):
    """Base of the contrastive losses: holds the logit scale (and bias) and gathers.

    ``log_logit_scale`` (``nn.Parameter``, init ``log(1/temperature)``) exists when
    ``learnable_temperature``; ``logit_scale = exp(log_logit_scale)`` clamped to
    ``max_logit_scale`` in forward (CLIP). Otherwise ``1/config.temperature`` (also
    clamped) is read at every call, so a :class:`losskit.Curriculum` can schedule it.
    The bias, where a loss has one, is an ``nn.Parameter`` ``logit_bias`` when
    ``learnable_bias``, else read from ``config.logit_bias``.
    """

    #: all-gathers the features across ranks itself, as ``config.distributed`` says
    gathers_features = True

    def __init__(self, config: C | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        self.log_logit_scale: nn.Parameter | None
        self.logit_bias: nn.Parameter | None
        if cfg.learnable_temperature:
            self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)))
        else:
            self.register_parameter("log_logit_scale", None)
        bias = getattr(cfg, "logit_bias", None)
        if bias is not None and getattr(cfg, "learnable_bias", False):
            self.logit_bias = nn.Parameter(torch.tensor(float(bias)))
        else:
            self.register_parameter("logit_bias", None)

    def learnable_fields(self) -> dict[str, str]:
        fields = {}
        if self.log_logit_scale is not None:
            fields["temperature"] = "log_logit_scale"
        if self.logit_bias is not None:
            fields["logit_bias"] = "logit_bias"
        return fields

    def learned_values(self) -> dict[str, float]:
        """The learned temperature (``1 / logit_scale``, clamped as in forward) and bias, for ``repr``."""
        values = super().learned_values()  # logit_bias: held as is
        if self.log_logit_scale is not None and not self.log_logit_scale.is_meta:
            with torch.no_grad():
                values["temperature"] = 1.0 / float(self.scale(torch.float32, self.log_logit_scale.device))
        return values

    def scale(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Current clamped logit scale, a 0-d tensor (differentiable when learnable)."""
        cfg = self.config
        if self.log_logit_scale is not None:
            return self.log_logit_scale.to(dtype).exp().clamp(max=cfg.max_logit_scale)
        return torch.tensor(min(1.0 / cfg.temperature, cfg.max_logit_scale), dtype=dtype, device=device)

    def bias(self, dtype: torch.dtype, device: torch.device) -> Tensor | None:
        """Current logit bias (0-d) or None when the loss has none."""
        if self.logit_bias is not None:
            return self.logit_bias.to(dtype)
        value = getattr(self.config, "logit_bias", None)
        return None if value is None else torch.tensor(float(value), dtype=dtype, device=device)

    def gathering(self) -> bool:
        """Whether this call gathers features across processes (``config.distributed``)."""
        return dist.use_gather(self.config.distributed)

    def scale_metrics(self, scale: Tensor, bias: Tensor | None) -> dict[str, Tensor]:
        out = {"logit_scale": scale, "temperature": 1.0 / scale}
        if bias is not None:
            out["logit_bias"] = bias
        return out


class PairContrastiveLoss(ContrastiveLoss[C], Generic[C]):
    """Base of the image-text pair losses (``clip``, ``siglip``): one call signature,
    ``(image_features [B, D], text_features [B, D], *, group_ids=None [B])``; subclasses
    implement :meth:`_score`."""

    def compute(
        self, image_features: Tensor, text_features: Tensor, *, group_ids: Tensor | None = None
    ) -> losskit.LossOutput:
        """The loss with its ``parts`` and ``metrics``."""
        return self._run(image_features, text_features, group_ids, metrics=True)

    def forward(self, image_features: Tensor, text_features: Tensor, *, group_ids: Tensor | None = None) -> Tensor:
        """``compute(...).loss``, skipping the metrics' extra passes over the logits."""
        return self._run(image_features, text_features, group_ids, metrics=False).loss

    def _run(self, image_features: Any, text_features: Any, group_ids: Any, *, metrics: bool, **options: Any) -> losskit.LossOutput:
        """Check (shapes, dtypes, devices; values under ``check_inputs``), then score in the
        compute dtype with autocast off."""
        img, txt = check_features(image_features, text_features, "image_features", "text_features")
        groups = check_group_ids(group_ids, img.shape[0], img.device)
        check_values(self.config.check_inputs, image_features=img, text_features=txt)
        dtype = compute_dtype(img, txt)
        keep = keeps_half_operands(self.config, img, txt)  # fused Triton path: half operands as they are
        with no_autocast(img):
            a, b = prepare(img, dtype, keep_half=keep), prepare(txt, dtype, keep_half=keep)
            scale, bias = self.scale(dtype, a.device), self.bias(dtype, a.device)
            return self._score(a, b, groups, scale, bias, metrics=metrics, **options)

    def _score(
        self, a: Tensor, b: Tensor, groups: Tensor | None, scale: Tensor, bias: Tensor | None, *, metrics: bool, **options: Any
    ) -> losskit.LossOutput:
        """Score checked, compute-dtype features ``a``, ``b [B, D]`` at ``scale`` (and ``bias``)."""
        raise NotImplementedError
