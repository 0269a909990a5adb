"""Brute-force float64 references for the contrastive tests (Python loops over rows),
written from the papers' formulas, independent of the plugin's code."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch


def positives_from(n_rows: int, n_cols: int, group_rows=None, group_cols=None, mask=None, offset: int = 0):
    """[R][C] nested lists of bools."""
    out = []
    for i in range(n_rows):
        row = []
        for j in range(n_cols):
            if mask is not None:
                row.append(bool(mask[i][j]))
            elif group_rows is not None:
                row.append(int(group_rows[i]) == int(group_cols[j]))
            else:
                row.append(j == i + offset)
        out.append(row)
    return out


def softmax_row(s, pos, neg, *, eps=0.0, beta=0.0, tau=0.0, floor=None):
    """Loss of one row: s is a 1-D float64 tensor, pos/neg lists of bools.

    (1-eps) * mean over positives p of -log(e^{s_p} / (e^{s_p} + Ng)) + eps * uniform CE
    over the valid columns; Ng = sum of e^{s_n} over negatives, or the Robinson et al.
    2021 / Chuang et al. 2020 estimator, exactly as in their reference code.
    """
    P = [j for j, v in enumerate(pos) if v]
    N = [j for j, v in enumerate(neg) if v]
    if not P:
        return s.sum() * 0.0
    terms = []
    for p in P:
        if not N:
            terms.append(s[p] * 0.0)
            continue
        e_neg = torch.exp(s[N])
        e_pos = torch.exp(s[p])
        if beta > 0:
            imp = (beta * e_neg.log()).exp()
            reweight = (imp * e_neg).sum() / imp.mean()
        else:
            reweight = e_neg.sum()
        if beta > 0 or tau > 0:
            ng = (-tau * len(N) * e_pos + reweight) / (1 - tau)
            ng = torch.clamp(ng, min=len(N) * math.exp(floor))
        else:
            ng = reweight
        terms.append(-torch.log(e_pos / (e_pos + ng)))
    loss = (1 - eps) * torch.stack(terms).mean()
    if eps > 0:
        V = [j for j in range(len(pos)) if pos[j] or neg[j]]
        logp = [s[j] - torch.log(torch.exp(s[V]).sum()) for j in V]
        loss = loss + eps * (-torch.stack(logp).mean())
    return loss


def softmax_rows(S, pos, neg=None, **kw):
    """[R] losses of a logit matrix S (float64) with nested-list masks."""
    if neg is None:
        neg = [[not v for v in row] for row in pos]
    return torch.stack([softmax_row(S[i], pos[i], neg[i], **kw) for i in range(S.shape[0])])


def transpose(m):
    return [list(col) for col in zip(*m)]


def sigmoid_rows(S, pos):
    """[R]: -sum_j log sigmoid(y_ij s_ij), y = +1 on positives, -1 elsewhere (SigLIP)."""
    out = []
    for i in range(S.shape[0]):
        total = S[i].sum() * 0.0
        for j in range(S.shape[1]):
            y = 1.0 if pos[i][j] else -1.0
            total = total - torch.log(torch.sigmoid(y * S[i, j]))
        out.append(total)
    return torch.stack(out)


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


def reduce(values, reduction, normalizer=None):
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    return values.sum() / (normalizer if normalizer is not None else values.numel())


@pytest.fixture(scope="session")
def ref():
    """The reference functions above."""
    return SimpleNamespace(
        positives_from=positives_from,
        softmax_row=softmax_row,
        softmax_rows=softmax_rows,
        sigmoid_rows=sigmoid_rows,
        transpose=transpose,
        normalize=normalize,
        reduce=reduce,
    )
