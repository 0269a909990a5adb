"""Numerical edges of the contrastive engine against the float64 brute force: fp32 feature
norms past fp32's square-root range (~1.8e19), logit ranges where a shared ``exp`` shift
would underflow (no float64 redo any more), and fp16 features so small that the true
gradient exceeds fp16's range (computed in fp32; only the final cast saturates)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import losskit

NAMES = ["clip", "siglip", "infonce"]


def _reference(ref, name: str, x: torch.Tensor, y: torch.Tensor, scale: float, groups=None) -> torch.Tensor:
    """float64 brute-force mean loss of ``name`` at a fixed scale (siglip: bias -10)."""
    S = scale * ref.normalize(x) @ ref.normalize(y).T
    n = x.shape[0]
    gl = None if groups is None else groups.tolist()
    pos = ref.positives_from(n, n, gl, gl)
    if name == "siglip":
        return ref.sigmoid_rows(S - 10.0, pos).mean()
    rows = ref.softmax_rows(S, pos)
    if name == "infonce":
        return rows.mean()
    return (rows + ref.softmax_rows(S.T, ref.transpose(pos))).mean() / 2


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("magnitude", [1e20, 1e30, 1e-10])
@pytest.mark.parametrize("chunk", [None, 3])
def test_fp32_features_of_extreme_norm_match_float64(ref, name, magnitude, chunk):
    g = torch.Generator().manual_seed(11)
    base_x, base_y = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    x = (base_x * magnitude).float().requires_grad_()
    y = (base_y * magnitude).float().requires_grad_()
    loss_fn = losskit.build(name, distributed="none", learnable_temperature=False, chunk_size=chunk)
    out = loss_fn(x, y)
    scale = 1.0 / loss_fn.config.temperature
    x64, y64 = base_x.clone().requires_grad_(), base_y.clone().requires_grad_()
    want = _reference(ref, name, x64, y64, scale)
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-6)
    gx, gy = torch.autograd.grad(out, [x, y])
    wx, wy = torch.autograd.grad(want, [x64, y64])  # the gradient scales as 1 / magnitude
    torch.testing.assert_close(gx.double() * magnitude, wx, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gy.double() * magnitude, wy, rtol=1e-4, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(NAMES), st.integers(2, 7), st.integers(0, 2**16), st.booleans(), st.one_of(st.none(), st.integers(1, 3)))
def test_logit_ranges_beyond_fp32_exp_match_float64(ref, name, n, seed, grouped, chunk):
    """Scale 100 with near-duplicate and opposite features: logits span [-100, 100], so a row's
    terms lie up to 200 below another row's maximum (exp(-200) underflows fp32)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 4, generator=g, dtype=torch.float64)
    x64 = (base * torch.where(torch.rand(n, 1, generator=g) > 0.5, 1.0, -1.0)).requires_grad_()
    y64 = (base + 1e-3 * torch.randn(n, 4, generator=g, dtype=torch.float64)).requires_grad_()
    groups = torch.randint(0, 3, (n,), generator=g) if grouped else None
    loss_fn = losskit.build(name, distributed="none", temperature=0.01, learnable_temperature=False, chunk_size=chunk)
    x, y = x64.detach().float().requires_grad_(), y64.detach().float().requires_grad_()
    out = loss_fn(x, y, group_ids=groups)
    want = _reference(ref, name, x64, y64, 100.0, groups)
    assert torch.isfinite(out)
    torch.testing.assert_close(out.double(), want, rtol=2e-4, atol=2e-4)
    got_g = torch.autograd.grad(out, [x, y])
    want_g = torch.autograd.grad(want, [x64, y64])
    for a, b in zip(got_g, want_g):
        torch.testing.assert_close(a.double(), b, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("name", NAMES)
def test_fp16_tiny_features_gradient_is_fp32_exact_and_saturates_only_in_the_cast(ref, name):
    """fp16 features of ~1e-7: the true gradient (~1/|x|) is above fp16's max (65504).
    It is computed in fp32 (equal to the float64 one), and the fp16 leaf's gradient is that
    value cast to fp16: inf exactly where it exceeds the range, equal elsewhere."""
    g = torch.Generator().manual_seed(5)
    x16 = (torch.randn(6, 4, generator=g) * 1e-7).half().requires_grad_()
    y16 = torch.randn(6, 4, generator=g).half().requires_grad_()
    loss_fn = losskit.build(name, distributed="none", learnable_temperature=False)
    out = loss_fn(x16, y16)
    x32, y32 = x16.detach().float().requires_grad_(), y16.detach().float().requires_grad_()
    out32 = loss_fn(x32, y32)
    torch.testing.assert_close(out.float(), out32)
    g16 = torch.autograd.grad(out, [x16])[0]
    g32 = torch.autograd.grad(out32, [x32])[0]
    x64 = x16.detach().double().requires_grad_()
    want = _reference(ref, name, x64, y16.detach().double(), 1.0 / loss_fn.config.temperature)
    torch.testing.assert_close(g32.double(), torch.autograd.grad(want, [x64])[0], rtol=1e-4, atol=1.0)
    assert torch.isfinite(g32).all() and g32.abs().max() > 65504  # the case really saturates fp16
    torch.testing.assert_close(g16, g32.half(), rtol=0, atol=0)  # inf only where |g| > fp16 max
