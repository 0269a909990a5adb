"""``infonce``: one-directional InfoNCE with in-batch and explicit negatives in one denominator
(van den Oord et al. 2018; conventions of info-nce-pytorch)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import losskit
from losskit.checks import check_float, check_index, check_same_device, check_size, compute_dtype
from losskit.loss import reduce
from losskit_plugins.contrastive.base import ContrastiveLoss
from losskit_plugins.contrastive.checks import check_features, check_group_ids, check_values, no_autocast, prepare
from losskit_plugins.contrastive.layout import layout
from losskit_plugins.contrastive.config import InfoNCEConfig
from losskit_plugins.contrastive.softmax import softmax_directions

__all__ = ["InfoNCELoss"]


class InfoNCELoss(ContrastiveLoss[InfoNCEConfig]):
    """InfoNCE of queries against keys (van den Oord et al. 2018; info-nce-pytorch conventions).

    Call: ``loss(query [N, D], positive_key [N, D], negative_keys=None, *,
    positive_mask=None [N, N] bool, group_ids=None [N])``; ``negative_keys`` is ``[M, D]``
    (shared by every query) or ``[N, M, D]`` (per query).

    Row ``i`` scores ``query_i . key / temperature`` (L2-normalised when ``normalize``) over
    the in-batch keys that are not its positives (``in_batch_negatives``, default true) and
    the ``negative_keys``, in one denominator. Positives: key ``i``, or ``positive_mask``, or
    equal ``group_ids`` (at most one of the two); with several, the mean over them of each
    one's ``-log softmax`` among itself and the negatives (docs/contrastive.md). A row without
    a positive gives 0 and is left out of the ``"mean"``. ``symmetric``: also keys against
    queries (in-batch part), averaged. ``exclude_self``: query and key sets are one (SimCLR /
    NT-Xent, pytorch-metric-learning's ``NTXentLoss``), ``(i, i)`` is neither positive nor
    negative. Defaults: temperature 0.1, fixed (read from the config at each call; a
    parameter ``log_logit_scale`` when ``learnable_temperature``).

    Metrics: ``accuracy_q2k`` (and ``accuracy_k2q``), ``positive_logit``,
    ``negative_logit`` (in-batch), ``logit_scale``, ``temperature``.
    """

    config_class = InfoNCEConfig

    def compute(
        self,
        query: Tensor,
        positive_key: Tensor,
        negative_keys: Tensor | None = None,
        *,
        positive_mask: Tensor | None = None,
        group_ids: Tensor | None = None,
    ) -> losskit.LossOutput:
        """The loss with its ``parts`` and ``metrics``."""
        return self._score(query, positive_key, negative_keys, positive_mask, group_ids, metrics=True)

    def forward(
        self,
        query: Tensor,
        positive_key: Tensor,
        negative_keys: Tensor | None = None,
        *,
        positive_mask: Tensor | None = None,
        group_ids: Tensor | None = None,
    ) -> Tensor:
        """``compute(...).loss``, skipping the metrics' extra passes over the logits."""
        return self._score(query, positive_key, negative_keys, positive_mask, group_ids, metrics=False).loss

    def _score(
        self,
        query: Tensor,
        positive_key: Tensor,
        negative_keys: Tensor | None,
        positive_mask: Tensor | None,
        group_ids: Tensor | None,
        *,
        metrics: bool,
    ) -> losskit.LossOutput:
        q, k = check_features(query, positive_key, "query", "positive_key")
        n, d = q.shape
        negs = _check_negatives(negative_keys, n, d, q.device)
        mask = _check_mask(positive_mask, n, q.device)
        groups = check_group_ids(group_ids, n, q.device)
        cfg = self.config
        gather = self.gathering()
        _check_options(cfg, mask, groups, negs, gather)
        check_values(cfg.check_inputs, query=q, positive_key=k, negative_keys=negs, positive_mask=mask)
        if cfg.exclude_self:  # the (i, i) pair is not a positive (and, in softmax_directions, not a negative)
            same = mask.bool() if mask is not None else groups[:, None] == groups[None, :]  # [N, N]
            mask, groups = same & ~torch.eye(n, dtype=torch.bool, device=q.device), None
        dtype = compute_dtype(q, k, negs)
        with no_autocast(q):
            a, b = prepare(q, dtype), prepare(k, dtype)
            extra = None if negs is None else prepare(negs, dtype)
            scale = self.scale(dtype, a.device)
            ab, ba = layout(a, b, groups, gather=gather, local_loss=cfg.local_loss, mask=None if mask is None else mask.bool())
            scored = softmax_directions(
                ab, ba, scale, None, cfg,
                want_ab=True, want_ba=cfg.symmetric, metrics=metrics, names=("q2k", "k2q"),
                extra=extra, in_batch_negatives=cfg.in_batch_negatives, exclude_self=cfg.exclude_self,
            )
        assert scored.ab is not None
        per_sample = scored.ab if scored.ba is None else (scored.ab + scored.ba) / 2  # [N]
        normalizer = scored.has_positive.sum().clamp_min(1).to(per_sample.dtype)
        parts = {"query_to_key": scored.ab} | ({} if scored.ba is None else {"key_to_query": scored.ba})
        return losskit.LossOutput(
            loss=reduce(per_sample, cfg.reduction, normalizer=normalizer),
            parts={name: reduce(v, cfg.reduction, normalizer=normalizer) for name, v in parts.items()},
            metrics={**scored.metrics, **(self.scale_metrics(scale, None) if metrics else {})},
        )


def _check_options(cfg: InfoNCEConfig, mask: Tensor | None, groups: Tensor | None, negs: Tensor | None, gather: bool) -> None:
    """Combinations of arguments and options that cannot be scored."""
    if mask is not None and groups is not None:
        raise ValueError("positive_mask, group_ids: pass at most one of them")
    if negs is None and not cfg.in_batch_negatives:
        raise ValueError("negative_keys: required with in_batch_negatives=false, else no row has a negative")
    if gather and negs is not None and not cfg.local_loss:
        raise ValueError("negative_keys: with distributed gathering they belong to this rank's queries; set local_loss=true")
    if cfg.exclude_self and mask is None and groups is None:
        raise ValueError(
            "exclude_self: needs group_ids or positive_mask (query and positive_key are the same set; "
            "with the diagonal excluded the matching pair is gone)"
        )
    if cfg.exclude_self and gather:
        raise ValueError("exclude_self: not supported when gathering across processes")


def _check_negatives(t: Any, n: int, d: int, device: torch.device) -> Tensor | None:
    if t is None:
        return None
    check_float(t, "negative_keys", (2, 3), layout="[M, D] or [N, M, D]")
    check_same_device(query=torch.empty(0, device=device), negative_keys=t)
    check_size(t, "negative_keys", t.dim() - 1, d, "the feature dim of query")
    if t.dim() == 3:
        check_size(t, "negative_keys", 0, n, "the batch size of query")
    return t


def _check_mask(t: Any, n: int, device: torch.device) -> Tensor | None:
    if t is None:
        return None
    check_index(t, "positive_mask", 2, layout="[N, N]", allow_bool=True)
    check_same_device(query=torch.empty(0, device=device), positive_mask=t)
    if tuple(t.shape) != (n, n):
        raise ValueError(f"positive_mask: expected shape ({n}, {n}) ([N, N], N = batch size), got {tuple(t.shape)}")
    return t
