"""``clip``: symmetric softmax contrastive loss (Radford et al. 2021, CLIP; open_clip ``ClipLoss``)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

import losskit
from losskit.loss import reduce
from losskit_plugins.contrastive.base import PairContrastiveLoss
from losskit_plugins.contrastive.layout import layout
from losskit_plugins.contrastive.config import ClipConfig
from losskit_plugins.contrastive.softmax import softmax_directions

__all__ = ["ClipLoss"]


class ClipLoss(PairContrastiveLoss[ClipConfig]):
    """Symmetric image-text softmax contrastive loss (CLIP, Radford et al. 2021; open_clip ``ClipLoss``).

    Call: ``loss(image_features [B, D], text_features [B, D], *, group_ids=None [B])``.

    ``(CE(logits_per_image) + CE(logits_per_text)) / 2`` with ``logits_per_image =
    logit_scale * img @ txt.T (+ logit_bias)`` (features L2-normalised when ``normalize``)
    and the matching pair as target; ``direction`` keeps one term. ``reduction="none"``:
    ``[B]``, sample ``i``'s image and text rows averaged. ``group_ids``: samples sharing an id
    are each other's positives, each scored against the negatives only (docs/contrastive.md);
    a row without a negative gives 0. ``hard_negative_beta`` (Robinson et al. 2021),
    ``debias_tau_plus`` (Chuang et al. 2020): :mod:`losskit_plugins.contrastive.softmax`.
    ``chunk_size``, ``distributed``, ``local_loss``: docs/scaling.md.

    Parameters: ``log_logit_scale`` (when ``learnable_temperature``, default; init
    ``log(1/0.07)``, clamped to ``max_logit_scale`` = 100 after ``exp``), ``logit_bias`` (when
    ``logit_bias`` is set and ``learnable_bias``). Metrics: ``accuracy_i2t``,
    ``accuracy_t2i``, ``positive_logit``, ``negative_logit``, ``logit_scale``,
    ``temperature`` (and ``logit_bias``).
    """

    config_class = ClipConfig

    def _score(
        self, a: Tensor, b: Tensor, groups: Tensor | None, scale: Tensor, bias: Tensor | None, *, metrics: bool, **_: Any
    ) -> losskit.LossOutput:
        cfg = self.config
        ab, ba = layout(a, b, groups, gather=self.gathering(), local_loss=cfg.local_loss)
        scored = softmax_directions(
            ab, ba, scale, bias, cfg,
            want_ab=cfg.direction != "text_to_image",
            want_ba=cfg.direction != "image_to_text",
            metrics=metrics,
            names=("i2t", "t2i"),
        )
        parts = {k: v for k, v in (("image_to_text", scored.ab), ("text_to_image", scored.ba)) if v is not None}
        terms = list(parts.values())
        per_sample = terms[0] if len(terms) == 1 else (terms[0] + terms[1]) / 2  # [B]
        return losskit.LossOutput(
            loss=reduce(per_sample, cfg.reduction),
            parts={k: reduce(v, cfg.reduction) for k, v in parts.items()},
            metrics={**scored.metrics, **(self.scale_metrics(scale, bias) if metrics else {})},
        )
