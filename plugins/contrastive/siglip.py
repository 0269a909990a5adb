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
from losskit_plugins.contrastive.pairs import Pairs

__all__ = ["SiglipLoss"]


class SiglipLoss(PairContrastiveLoss[SiglipConfig]):
    """Pairwise sigmoid image-text loss (SigLIP).

    Call: ``loss(image_features [B, D], text_features [B, D], *, group_ids=None [B],
    negative_only=False)``.

    ``logits = logit_scale * img @ txt.T + logit_bias``; ``labels = +1`` for positive
    pairs (the diagonal, or equal ``group_ids``), ``-1`` elsewhere;
    ``loss = -sum_ij log sigmoid(labels_ij * logits_ij) / B`` (normalised by the batch
    size as in the SigLIP paper and open_clip). ``reduction="none"`` gives ``[B]``: the
    sum over each image's row, so ``"mean"`` is exactly the paper's value. A batch of
    one sample is valid: ``-log sigmoid(s_11)``. The positive term is ``softplus(-s)``
    (big_vision's value, no cancellation). ``negative_only=True``: every pair is a negative
    (open_clip's ``_loss(..., negative_only=True)`` for the neighbour-exchange chunks of
    other ranks' texts); still divided by this call's ``B``.

    Parameters: ``log_logit_scale`` (init ``log(1/temperature)`` = log 10, clamped to
    ``max_logit_scale`` after ``exp``) and ``logit_bias`` (init -10) when learnable.
    With ``distributed`` gathering every pair is scored exactly once over all ranks
    (with ``local_loss``, each rank its own rows against all gathered texts).

    Metrics: ``accuracy_i2t``/``accuracy_t2i`` (top-1 in the batch),
    ``positive_logit``/``negative_logit`` (means), ``logit_scale``, ``temperature``,
    ``logit_bias``.
    """

    config_class = SiglipConfig

    def compute(
        self, image_features: Tensor, text_features: Tensor, *, group_ids: Tensor | None = None, negative_only: bool = False
    ) -> losskit.LossOutput:
        """The loss with its ``parts`` and ``metrics``."""
        return self._run(image_features, text_features, group_ids, metrics=True, negative_only=negative_only)

    def forward(
        self, image_features: Tensor, text_features: Tensor, *, group_ids: Tensor | None = None, negative_only: bool = False
    ) -> Tensor:
        """``compute(...).loss``, skipping the metrics' extra passes over the logits."""
        return self._run(image_features, text_features, group_ids, metrics=False, negative_only=negative_only).loss

    def _score(
        self, a: Tensor, b: Tensor, groups: Tensor | None, scale: Tensor, bias: Tensor | None, *, metrics: bool,
        negative_only: bool = False,
    ) -> losskit.LossOutput:
        cfg = self.config
        if negative_only and groups is not None:
            raise ValueError("negative_only: every pair is a negative; do not pass group_ids with it")
        lay, _ = layout(a, b, groups, gather=self.gathering(), local_loss=cfg.local_loss)
        pairs = Pairs.nothing(lay.pairs.num_rows, lay.pairs.num_cols, a.device) if negative_only else lay.pairs
        opts = EngineOptions("sigmoid", pairs, chunk=cfg.chunk_size, normalize=cfg.normalize, metrics=metrics,
                           kernel=cfg.kernel)
        res = pairwise_loss(lay.rows, lay.cols, scale, bias, opts)
        out: dict[str, Tensor] = {}
        if metrics:
            out["accuracy_i2t"] = accuracy(pairs, res.row_argmax, True)
            if lay.square:
                out["accuracy_t2i"] = accuracy(pairs, res.col_argmax, False)
            out.update(mean_logits(lay.rows, lay.cols, scale, bias, res, normalize=cfg.normalize))
            out.update(self.scale_metrics(scale, bias))
        return losskit.LossOutput(loss=reduce(res.row_loss, cfg.reduction), metrics=out)
