"""The tiled path (``chunk_size``) equals the dense path: loss and every gradient, in float64
(1e-10) and float32 (1e-5 relative), for chunk sizes that do and don't divide the batch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losskit


@st.composite
def tiled_cases(draw):
    name = draw(st.sampled_from(["clip", "siglip", "infonce"]))
    b = draw(st.integers(1, 24))
    cfg = {
        "chunk_size": draw(st.integers(1, b + 3)),
        "learnable_temperature": draw(st.booleans()),
        "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
        "distributed": "none",
    }
    if name != "siglip":
        cfg["label_smoothing"] = draw(st.sampled_from([0.0, 0.1]))
    if name == "clip":
        cfg["direction"] = draw(st.sampled_from(["both", "image_to_text", "text_to_image"]))
        cfg["logit_bias"] = draw(st.sampled_from([None, 0.7]))
    if name == "infonce":
        cfg["symmetric"] = draw(st.booleans())
    extras = draw(st.sampled_from(["none", "groups", "negatives"] if name == "infonce" else ["none", "groups"]))
    return name, b, draw(st.integers(2, 9)), cfg, extras, draw(st.integers(0, 2**16))


def _run(name, cfg, inputs, kwargs, dtype):
    loss_fn = losskit.build(name, **cfg).to(dtype)
    leaves = [t.detach().to(dtype).requires_grad_() for t in inputs]
    out = loss_fn(*leaves, **kwargs)
    w = torch.linspace(0.5, 1.5, out.numel(), dtype=dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * w).sum(), leaves + list(loss_fn.parameters()))
    return [out.detach(), *grads]


def _inputs(name, b, d, extras, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(b, d, generator=g, dtype=torch.float64)
    inputs = [a, a + torch.randn(b, d, generator=g, dtype=torch.float64)]
    kwargs = {}
    if extras == "groups":
        kwargs["group_ids"] = torch.randint(0, max(1, b // 2), (b,), generator=g)
    if extras == "negatives":
        inputs.append(torch.randn(5, d, generator=g, dtype=torch.float64))
    return inputs, kwargs


def _rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@given(tiled_cases())
def test_tiled_equals_dense(case):
    name, b, d, cfg, extras, seed = case
    inputs, kwargs = _inputs(name, b, d, extras, seed)
    dense_cfg = {**cfg, "chunk_size": None}
    for got, want in zip(_run(name, cfg, inputs, kwargs, torch.float64), _run(name, dense_cfg, inputs, kwargs, torch.float64)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for got, want in zip(_run(name, cfg, inputs, kwargs, torch.float32), _run(name, dense_cfg, inputs, kwargs, torch.float32)):
        # relative in norm; entries that are ~0 (e.g. the bias gradient of a softmax) absolutely
        assert _rel(got, want) <= 1e-5 or float((got - want).abs().max()) <= 1e-5, (name, cfg)


@pytest.mark.parametrize("chunk", [None, 1])
@pytest.mark.parametrize("name", ["clip", "infonce"])
def test_underflowing_rows_fall_back_to_float64(name, chunk):
    # row 1's best logit is -100 while the block's best is +100: exp(-200) underflows in fp32
    img = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    txt = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.6, 0.8]], requires_grad=True)
    cfg = dict(temperature=0.01, learnable_temperature=False, chunk_size=chunk, distributed="none")
    loss_fn = losskit.build(name, symmetric=True, **cfg) if name == "infonce" else losskit.build(name, **cfg)
    out = loss_fn(img, txt)
    out.backward()
    ref_img, ref_txt = img.detach().double().requires_grad_(), txt.detach().double().requires_grad_()
    want = loss_fn(ref_img, ref_txt)
    want.backward()
    assert out.dtype == torch.float32 and torch.isfinite(out)
    torch.testing.assert_close(out.double(), want, rtol=1e-6, atol=1e-6)
    for got, ref in ((img.grad, ref_img.grad), (txt.grad, ref_txt.grad)):  # fp32 normalisation rounds
        torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_tiled_memory_is_bounded_by_the_chunk():
    # the tiled autograd graph keeps no [B, B] tensor: only inputs and O(B) statistics
    b, d = 512, 8
    img, txt = torch.randn(b, d, requires_grad=True), torch.randn(b, d, requires_grad=True)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        tiled = losskit.build("clip", chunk_size=32, distributed="none")(img, txt)
    assert max(sizes) < b * b // 4
    tiled.backward()
    assert torch.isfinite(img.grad).all()
