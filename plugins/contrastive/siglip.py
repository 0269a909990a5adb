"""``siglip``: pairwise sigmoid loss (Zhai et al. 2023, SigLIP; open_clip ``SigLipLoss``)."""

from __future__ import annotations

from torch import Tensor

import losskit
from losskit.loss import reduce
from losskit_plugins.contrastive.base import PairContrastiveLoss
from losskit_plugins.contrastive.layout import layout
from losskit_plugins.contrastive.metrics import accuracy, mean_logits
from losskit_plugins.contrastive.config import SiglipConfig
from losskit_plugins.contrastive.engine import EngineOptions, pairwise_loss

__all__ = ["SiglipLoss"]


class SiglipLoss(PairContrastiveLoss[SiglipConfig]):
    """Pairwise sigmoid image-text loss (SigLIP).

    Call: ``loss(image_features [B, D], text_features [B, D], *, group_ids=None [B])``.

    ``logits = logit_scale * img @ txt.T + logit_bias``; ``labels = +1`` for positive
    pairs (the diagonal, or equal ``group_ids``), ``-1`` elsewhere;
    ``loss = -sum_ij log sigmoid(labels_ij * logits_ij) / B`` (normalised by the batch
    size as in the SigLIP paper and open_clip). ``reduction="none"`` gives ``[B]``: the
    sum over each image's row, so ``"mean"`` is exactly the paper's value. A batch of
    one sample is valid: ``-log sigmoid(s_11)``.

    Parameters: ``log_logit_scale`` (init ``log(1/temperature)`` = log 10, clamped to
    ``max_logit_scale`` after ``exp``) and ``logit_bias`` (init -10) when learnable.
    With ``distributed`` gathering every pair is scored exactly once over all ranks
    (with ``local_loss``, each rank its own rows against all gathered texts).

    Metrics: ``accuracy_i2t``/``accuracy_t2i`` (top-1 in the batch),
    ``positive_logit``/``negative_logit`` (means), ``logit_scale``, ``temperature``,
    ``logit_bias``.
    """

    config_class = SiglipConfig

    def _score(
        self, a: Tensor, b: Tensor, groups: Tensor | None, scale: Tensor, bias: Tensor | None, *, metrics: bool
    ) -> losskit.LossOutput:
        cfg = self.config
        lay, _ = layout(a, b, groups, gather=self.gathering(), local_loss=cfg.local_loss)
        opts = EngineOptions("sigmoid", lay.pairs, chunk=cfg.chunk_size, normalize=cfg.normalize, metrics=metrics)
        res = pairwise_loss(lay.rows, lay.cols, scale, bias, opts)
        out: dict[str, Tensor] = {}
        if metrics:
            out["accuracy_i2t"] = accuracy(lay.pairs, res.row_argmax, True)
            if lay.square:
                out["accuracy_t2i"] = accuracy(lay.pairs, res.col_argmax, False)
            out.update(mean_logits(lay.rows, lay.cols, scale, bias, res.positive_logits, normalize=cfg.normalize))
            out.update(self.scale_metrics(scale, bias))
        return losskit.LossOutput(loss=reduce(res.row_loss, cfg.reduction), metrics=out)
