"""Softmax contrastive scoring shared by ``clip`` and ``infonce``.

:func:`softmax_directions` scores ``a -> b`` and/or ``b -> a`` for a :class:`Layout`
and returns per-sample losses. It uses the fast exact engine
(:mod:`losskit_plugins.contrastive.engine`, dense or tiled) whenever it can, and the plain-autograd
dense path :func:`multi_positive_loss` when an option needs it: hard-negative
reweighting (Robinson et al. 2021), debiasing (Chuang et al. 2020), per-query
explicit negatives ``[N, M, D]`` or no in-batch negatives.

Loss of row ``i`` with positives ``P_i``, negatives ``N_i`` (``n_i = |N_i|``), logits ``s``::

    L_i = (1 - eps) * mean_{p in P_i} softplus(log Ng_ip - s_ip) + eps * (logsumexp_j s_ij - mean_j s_ij)

with ``log Ng_ip = logsumexp_{n in N_i} s_in`` by default (then ``softplus(log Ng - s_p) =
-log softmax`` of ``p`` among ``{p} U N_i``); with ``beta > 0``
``log Ng = log n_i + logsumexp((1+beta) s_n) - logsumexp(beta s_n)`` (importance weights
``e^{beta s_n}`` normalised to mean 1); with ``tau+ > 0``
``Ng = (Ng - tau+ n_i e^{s_ip}) / (1 - tau+)``; with either, ``Ng`` is floored at
``n_i e^{-scale + bias}`` (the logit of cosine -1), as in both papers' code. Everything
is evaluated in log space (``log(-expm1(.))``), so it stays finite at scale 100 where
the reference implementations' ``exp`` overflows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from losskit_plugins.contrastive.layout import Layout
from losskit_plugins.contrastive.metrics import accuracy, mean_logits
from losskit_plugins.contrastive.config import _SoftmaxConfig
from losskit_plugins.contrastive.engine import EngineOptions, EngineResult, pairwise_loss, softplus
from losskit_plugins.contrastive.normalize import normalized

__all__ = ["Scored", "masked_logsumexp", "multi_positive_loss", "softmax_directions"]

_NEG_INF = float("-inf")


def masked_logsumexp(s: Tensor, mask: Tensor) -> Tensor:
    """``[R]`` log-sum-exp of ``s [R, C]`` over ``mask`` per row; ``-inf`` (zero gradient) for empty rows."""
    m = s.masked_fill(~mask, _NEG_INF).amax(1, keepdim=True)  # [R, 1]
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m)).detach()
    total = (s - m).masked_fill(~mask, _NEG_INF).exp().sum(1)  # [R]
    tiny = torch.finfo(s.dtype).tiny
    return torch.where(total > 0, torch.log(total.clamp_min(tiny)) + m[:, 0], torch.full_like(total, _NEG_INF))


def multi_positive_loss(
    s: Tensor,
    pos: Tensor,
    neg: Tensor,
    *,
    label_smoothing: float = 0.0,
    beta: float = 0.0,
    tau_plus: float = 0.0,
    floor_logit: Tensor | float | None = None,
) -> Tensor:
    """Per-row loss ``[R]`` of logits ``s [R, C]`` (formula in the module docstring).

    Args:
        s: logits, ``[R, C]``.
        pos, neg: ``[R, C]`` bool masks of positives and negatives (disjoint; entries in
            neither are ignored).
        label_smoothing: ``eps``, spread over the columns in ``pos | neg``.
        beta, tau_plus: hard-negative / debiasing parameters (0 = off).
        floor_logit: lowest possible logit, for the ``Ng`` floor (needed if beta or tau_plus > 0).

    Rows without positives give 0; a positive with no negatives gives 0.
    """
    n_neg = neg.sum(1).to(s.dtype)  # [R]
    log_n = torch.log(n_neg.clamp_min(1))  # rows without negatives are set to -inf below
    if beta > 0:
        log_ng = log_n + masked_logsumexp((1 + beta) * s, neg) - masked_logsumexp(beta * s, neg)
    else:
        log_ng = masked_logsumexp(s, neg)
    log_ng = log_ng[:, None].expand_as(s)  # [R, C] (per positive column)
    if tau_plus > 0:
        d = math.log(tau_plus) + log_n[:, None] + s - log_ng  # log(tau+ n e^{s_p}) - log Ng
        ok = d < 0
        d_safe = torch.where(ok, d, torch.full_like(d, -1.0))
        log_ng = torch.where(ok, log_ng + torch.log(-torch.expm1(d_safe)), torch.full_like(d, _NEG_INF))
        log_ng = log_ng - torch.log1p(torch.tensor(-tau_plus, dtype=s.dtype))
    if beta > 0 or tau_plus > 0:
        assert floor_logit is not None
        floor = (log_n + floor_logit)[:, None]
        log_ng = torch.maximum(log_ng, floor.expand_as(log_ng))
    log_ng = torch.where((n_neg > 0)[:, None], log_ng, torch.full_like(log_ng, _NEG_INF))
    per_pos = softplus(log_ng - s).masked_fill(~pos, 0.0)  # [R, C]
    n_pos = pos.sum(1).to(s.dtype)
    loss = (1 - label_smoothing) * per_pos.sum(1) / n_pos.clamp_min(1)
    if label_smoothing > 0:
        valid = pos | neg
        mean_s = s.masked_fill(~valid, 0.0).sum(1) / valid.sum(1).clamp_min(1)
        loss = loss + label_smoothing * (masked_logsumexp(s, valid) - mean_s)
    return torch.where(n_pos > 0, loss, torch.zeros_like(loss))


@dataclass
class Scored:
    """Per-sample losses of each direction (``None`` if not computed), the mask of
    samples that have a positive in ``a -> b``, and detached metrics."""

    ab: Tensor | None
    ba: Tensor | None
    has_positive: Tensor
    metrics: dict[str, Tensor]


def _generic(
    lay: Layout, scale: Tensor, bias: Tensor | None, cfg: _SoftmaxConfig, *, rows: bool, cols: bool,
    extra: Tensor | None, in_batch_negatives: bool, exclude_self: bool,
) -> EngineResult:
    """Dense autograd path, same outputs as the engine."""
    x, y, P = lay.rows, lay.cols, lay.pairs
    if cfg.normalize:
        x, y = normalized(x), normalized(y)
        extra = None if extra is None else normalized(extra)
    s = scale * x @ y.T + (bias if bias is not None else 0)  # [R, C]
    pos = P.positives(0, P.num_rows)
    neg = ~pos if in_batch_negatives else torch.zeros_like(pos)
    if exclude_self:  # (i, i) is neither a positive nor a negative
        keep = ~torch.eye(*pos.shape, dtype=torch.bool, device=pos.device)
        pos, neg = pos & keep, neg & keep
    s_all, pos_all, neg_all = s, pos, neg
    if extra is not None:
        s_ex = scale * (x @ extra.T if extra.dim() == 2 else torch.einsum("rd,rmd->rm", x, extra))  # [R, M]
        if bias is not None:
            s_ex = s_ex + bias
        s_all = torch.cat([s, s_ex], 1)
        pos_all = torch.cat([pos, torch.zeros_like(s_ex, dtype=torch.bool)], 1)
        neg_all = torch.cat([neg, torch.ones_like(s_ex, dtype=torch.bool)], 1)
    floor = -scale + (bias if bias is not None else 0)
    kw = dict(label_smoothing=cfg.label_smoothing, beta=cfg.hard_negative_beta, tau_plus=cfg.debias_tau_plus, floor_logit=floor)
    row_loss = multi_positive_loss(s_all, pos_all, neg_all, **kw) if rows else s.new_zeros(P.num_rows)
    col_loss = multi_positive_loss(s.T, pos.T, neg.T, **kw) if cols else s.new_zeros(P.num_cols)
    with torch.no_grad():
        seen = s_all.masked_fill(~(pos_all | neg_all), _NEG_INF) if exclude_self else s_all  # [R, C (+M)]
        seen_t = s.masked_fill(~(pos | neg), _NEG_INF) if exclude_self else s
        pos_sum = (s * pos).sum()
    return EngineResult(row_loss, col_loss, seen.argmax(1), seen_t.argmax(0), pos_sum, pos.sum())


def _engine(
    lay: Layout, scale: Tensor, bias: Tensor | None, cfg: _SoftmaxConfig, *, rows: bool, cols: bool,
    extra: Tensor | None, metrics: bool,
) -> EngineResult:
    y, P = lay.cols, lay.pairs
    if extra is not None:  # shared explicit negatives: more columns that are nobody's positive
        y = torch.cat([y, extra], 0)
        P = P.pad_columns(extra.shape[0])
    o = EngineOptions(
        "softmax", P, rows=rows, cols=cols, label_smoothing=cfg.label_smoothing, chunk=cfg.chunk_size,
        normalize=cfg.normalize, metrics=metrics, kernel=cfg.kernel,
    )
    return pairwise_loss(lay.rows, y, scale, bias, o)


def _needs_generic(cfg: _SoftmaxConfig, extra: Tensor | None, in_batch_negatives: bool, exclude_self: bool) -> bool:
    """Whether an option needs the dense autograd path (refused with ``chunk_size``)."""
    generic = cfg.hard_negative_beta > 0 or cfg.debias_tau_plus > 0 or not in_batch_negatives or exclude_self or (
        extra is not None and extra.dim() == 3
    )
    if generic and cfg.chunk_size is not None:
        raise ValueError(
            "chunk_size: the tiled path covers the in-batch part with shared negatives only; "
            "per-query negative_keys [N, M, D] need chunk_size=null"
        )
    return generic


def softmax_directions(
    ab: Layout,
    ba: Callable[[], Layout],
    scale: Tensor,
    bias: Tensor | None,
    cfg: _SoftmaxConfig,
    *,
    want_ab: bool,
    want_ba: bool,
    metrics: bool,
    names: tuple[str, str],
    extra: Tensor | None = None,
    in_batch_negatives: bool = True,
    exclude_self: bool = False,
) -> Scored:
    """Score ``a -> b`` (rows of ``ab``) and/or ``b -> a``.

    ``extra``: explicit negatives for ``a -> b`` only, ``[M, D]`` shared or ``[R, M, D]``
    per row. ``names``: metric suffixes of the two directions (e.g. ``("i2t", "t2i")``).
    ``exclude_self``: the diagonal of the in-batch matrix is neither positive nor negative.
    """
    generic = _needs_generic(cfg, extra, in_batch_negatives, exclude_self)

    def score(lay: Layout, rows: bool, cols: bool, ex: Tensor | None):
        if generic:
            return _generic(
                lay, scale, bias, cfg, rows=rows, cols=cols, extra=ex, in_batch_negatives=in_batch_negatives,
                exclude_self=exclude_self,
            )
        return _engine(lay, scale, bias, cfg, rows=rows, cols=cols, extra=ex, metrics=metrics)

    out: dict[str, Tensor] = {}
    l_ab = l_ba = None
    one_matrix = ab.square and extra is None and want_ab and want_ba
    if one_matrix:  # both directions from one logit matrix
        r = score(ab, True, True, None)
        l_ab, l_ba = r.row_loss, r.col_loss
        if metrics:
            out[f"accuracy_{names[0]}"] = accuracy(ab.pairs, r.row_argmax, True)
            out[f"accuracy_{names[1]}"] = accuracy(ab.pairs, r.col_argmax, False)
            out.update(mean_logits(ab.rows, ab.cols, scale, bias, r, normalize=cfg.normalize))
    else:
        if want_ab:
            r = score(ab, True, False, extra)
            l_ab = r.row_loss
            if metrics:
                out[f"accuracy_{names[0]}"] = accuracy(ab.pairs, r.row_argmax, True)
                out.update(mean_logits(ab.rows, ab.cols, scale, bias, r, normalize=cfg.normalize))
        if want_ba:
            lay = ba()
            r = score(lay, True, False, None)
            l_ba = r.row_loss
            if metrics:
                out[f"accuracy_{names[1]}"] = accuracy(lay.pairs, r.row_argmax, True)
                if not want_ab:
                    out.update(mean_logits(lay.rows, lay.cols, scale, bias, r, normalize=cfg.normalize))
    has_pos = ab.pairs.row_count(torch.float32) > 0
    return Scored(l_ab, l_ba, has_pos, out)
