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
    """Symmetric image-text softmax contrastive loss (CLIP).

    Call: ``loss(image_features [B, D], text_features [B, D], *, group_ids=None [B])``.

    ``logits_per_image = logit_scale * img @ txt.T (+ logit_bias)`` (features
    L2-normalised first when ``normalize``), ``logits_per_text`` its transpose, and
    the loss is ``(CE(logits_per_image) + CE(logits_per_text)) / 2`` with the matching
    pair as target, exactly open_clip's ``ClipLoss``; ``direction`` keeps one term.
    ``reduction="none"`` gives ``[B]``: sample ``i``'s image row and text row averaged.

    ``group_ids``: samples sharing an id are each other's positives and never each
    other's negatives; each positive is scored against the negatives only and a row's
    loss is the mean over its positives (why not SupCon's form: docs/contrastive.md).
    A row without a negative gives loss 0.

    Hard negatives (``hard_negative_beta``, Robinson et al. 2021) and debiasing
    (``debias_tau_plus``, Chuang et al. 2020) reweight the negatives in log space (see
    :mod:`losskit_plugins.contrastive.softmax`). ``chunk_size`` selects the exact
    tiled path; ``distributed``/``local_loss`` the multi-process layout (docs/scaling.md).

    Parameters: ``log_logit_scale`` (when ``learnable_temperature``; init
    ``log(1/temperature)`` = log(1/0.07), clamped to ``max_logit_scale`` = 100 after
    ``exp``), ``logit_bias`` (when ``logit_bias`` is set and ``learnable_bias``).

    Metrics: ``accuracy_i2t``/``accuracy_t2i`` (in-batch top-1, a hit is any
    positive), ``positive_logit``/``negative_logit`` (means), ``logit_scale``,
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
