"""A small symmetric contrastive loss registered as a temporary plugin by the trainer tests.

It lets the trainer tests run in subprocesses (torchrun, SIGKILL/resume) with a loss
whose formula is written out here, independent of the bundled plugins: the group-aware
symmetric cross-entropy of CLIP (Radford et al. 2021) with a learnable log logit scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

import losskit

NAME = "trainer_test_clip"
PLUGIN = "trainer_tests"


class RefClipConfig(losskit.LossConfig):
    """Config of :class:`RefClipLoss`."""

    temperature: float = Field(0.07, gt=0.0, le=10.0, description="Initial temperature.")


class RefClipLoss(losskit.Loss[RefClipConfig]):
    """Group-aware symmetric InfoNCE over ``[B, D]`` image and text features."""

    config_class = RefClipConfig

    def __init__(self, config: RefClipConfig | None = None) -> None:
        super().__init__(config)
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / self.config.temperature)))

    def learnable_fields(self):
        return {"temperature": "log_scale"}

    def learned_values(self):
        return {"temperature": float(1 / self.log_scale.detach().exp())}

    def compute(self, image_features, text_features, *, group_ids=None):
        logits = self.log_scale.exp().clamp(max=100) * image_features.float() @ text_features.float().T  # [B, B]
        if group_ids is None:
            group_ids = torch.arange(logits.shape[0], device=logits.device)
        positive = (group_ids[:, None] == group_ids[None, :]).float()  # [B, B]
        target = positive / positive.sum(1, keepdim=True)
        i2t = F.cross_entropy(logits, target)
        t2i = F.cross_entropy(logits.T, target)
        return losskit.LossOutput(
            loss=(i2t + t2i) / 2,
            parts={"i2t": i2t, "t2i": t2i},
            metrics={"temperature": 1 / self.log_scale.exp()},
        )


class Plugin:
    """The plugin object given to ``losskit.temporary_plugin``."""

    @losskit.hookimpl
    def register_losses(self, register):
        register(NAME, RefClipLoss, config=RefClipConfig)
