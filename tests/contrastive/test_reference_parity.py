"""Parity options checked against the real libraries (dev extra): ``infonce(exclude_self=True)``
vs pytorch-metric-learning's ``NTXentLoss`` (its own test numbers, values and gradients),
``siglip``'s positive term vs big_vision's value at a large logit, and ``siglip(negative_only=True)``
vs open_clip's ``SigLipLoss._loss(..., negative_only=True)``."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st
from open_clip.loss import SigLipLoss
from pytorch_metric_learning.losses import NTXentLoss
from pytorch_metric_learning.reducers import AvgNonZeroReducer, PerAnchorReducer

import losskit


def _angles(degrees: list[int], dtype=torch.float64) -> torch.Tensor:
    rad = torch.tensor(degrees, dtype=dtype) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], 1)  # [N, 2] unit vectors, as PML's angle_to_coord


def _ntxent(**kw) -> losskit.Loss:
    return losskit.build("infonce", exclude_self=True, temperature=0.1, distributed="none", **kw)


def test_exclude_self_reproduces_pml_test_ntxent_loss_numbers():
    emb = _angles([0, 10, 20, 50, 60, 80])
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    per_anchor = NTXentLoss(temperature=0.1, reducer=PerAnchorReducer(AvgNonZeroReducer()))(emb, labels)
    got = _ntxent()(emb, emb, group_ids=labels)
    assert abs(per_anchor.item() - 0.352942) < 1e-6  # PML's own number for this case
    torch.testing.assert_close(got, per_anchor, rtol=1e-12, atol=1e-12)
    mask = labels[:, None] == labels[None, :]  # the same positives as a mask (diagonal included: it is excluded)
    torch.testing.assert_close(_ntxent()(emb, emb, positive_mask=mask), per_anchor, rtol=1e-12, atol=1e-12)


@given(st.integers(2, 8), st.integers(2, 5), st.integers(0, 2**16))
def test_exclude_self_equals_pml_ntxent_on_simclr_views_value_and_gradient(n, d, seed):
    """Two views per sample (every anchor has one positive): PML's default per-pair mean and
    losskit's per-anchor mean coincide; gradients w.r.t. the embeddings too."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(2 * n, d, generator=g, dtype=torch.float64)
    labels = torch.arange(n).repeat(2)
    a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    want = NTXentLoss(temperature=0.1)(a, labels)
    got = _ntxent()(b, b, group_ids=labels)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    (ga,), (gb,) = torch.autograd.grad(want, [a]), torch.autograd.grad(got, [b])
    torch.testing.assert_close(gb, ga, rtol=1e-8, atol=1e-10)


def test_exclude_self_rows_without_a_valid_pair_give_zero_as_pml():
    """PML's test_with_no_valid_pairs: one sample, all one label (no negatives), all distinct (no positives)."""
    for degrees, labels in [([0], [0]), ([0, 10, 20], [0, 0, 0]), ([0, 40, 60], [1, 2, 3])]:
        emb = _angles(degrees).requires_grad_()
        lab = torch.tensor(labels)
        got = _ntxent()(emb, emb, group_ids=lab)
        assert NTXentLoss(temperature=0.1)(emb, lab).item() == 0.0
        assert got.item() == 0.0
        got.backward()
        assert emb.grad is not None and torch.equal(emb.grad, torch.zeros_like(emb))


def test_exclude_self_needs_groups_or_mask_and_no_tiling():
    x = torch.randn(4, 3)
    try:
        _ntxent()(x, x)
    except ValueError as e:
        assert "exclude_self" in str(e) and "group_ids" in str(e)
    else:
        raise AssertionError("exclude_self without group_ids/positive_mask must raise")
    try:
        losskit.build("infonce", exclude_self=True, chunk_size=2)
    except losskit.errors.ConfigError as e:
        assert "exclude_self" in str(e)
    else:
        raise AssertionError("exclude_self with chunk_size must raise")


def test_siglip_positive_term_has_no_cancellation_big_vision_value():
    """big_vision computes -log_sigmoid(s) for a positive: at s = 37.9 that is ~3.5e-17, not 0."""
    loss_fn = losskit.build(
        "siglip", normalize=False, temperature=1.0, learnable_temperature=False, logit_bias=0.0,
        learnable_bias=False, distributed="none",
    )
    x = torch.tensor([[37.9]], requires_grad=True)
    got = loss_fn(x, torch.tensor([[1.0]]))
    want = math.log1p(math.exp(-x.item()))  # float64 softplus(-s) of the fp32 input
    assert got.item() > 0.0
    assert abs(got.item() - want) <= 1e-6 * want
    got.backward()  # d/ds softplus(-s) = -sigmoid(-s), also no cancellation
    assert x.grad is not None and x.grad.item() < 0.0
    assert abs(x.grad.item() + want) <= 1e-6 * want


@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**16), st.one_of(st.none(), st.integers(1, 4)))
def test_siglip_negative_only_equals_open_clip(b, d, seed, chunk):
    g = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=-1)
    loss_fn = losskit.build("siglip", distributed="none", normalize=False, chunk_size=chunk).double()
    a, t = img.clone().requires_grad_(), txt.clone().requires_grad_()
    got = loss_fn(a, t, negative_only=True)
    a2, t2 = img.clone().requires_grad_(), txt.clone().requires_grad_()
    scale = loss_fn.log_logit_scale.detach().exp().requires_grad_()
    bias = loss_fn.logit_bias.detach().clone().requires_grad_()
    want = SigLipLoss()._loss(a2, t2, scale, bias, negative_only=True)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    got_g = torch.autograd.grad(got, [a, t, loss_fn.logit_bias])
    want_g = torch.autograd.grad(want, [a2, t2, bias])
    for x, y in zip(got_g, want_g):
        torch.testing.assert_close(x, y, rtol=1e-8, atol=1e-10)
