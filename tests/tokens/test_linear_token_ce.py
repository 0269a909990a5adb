"""``linear_token_ce`` against ``token_ce`` on ``hidden @ weight.T + bias`` and the float64 reference."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losskit
from losskit.testing import check_loss


def _head(case, h, dtype, seed, with_bias):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*case.rows_shape, h, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True)
    weight = (torch.randn(case.v, h, generator=gen, dtype=torch.float64) * 1.5).to(dtype).requires_grad_(True)
    bias = torch.randn(case.v, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True) if with_bias else None
    return hidden, weight, bias


def _grads(value, tensors, upstream):
    wrt = [t for t in tensors if t is not None]
    return torch.autograd.grad(value, wrt, upstream, allow_unused=True)


@given(st.data())
def test_equals_token_ce_on_materialised_logits(tok, data):
    """fp32, chunk sizes that do and do not divide N: values and gradients within 1e-5 relative."""
    case = tok.draw_case(data)
    h = data.draw(st.integers(1, 6), label="H")
    chunk = data.draw(st.sampled_from([None, 1, 2, 3, 4, 7, 64]), label="chunk_size")
    with_bias = data.draw(st.booleans(), label="bias")
    hidden, weight, bias = _head(case, h, torch.float32, data.draw(st.integers(0, 999)), with_bias)
    weights = None if case.weights is None else case.weights.float().requires_grad_(True)
    fused = losskit.build("linear_token_ce", chunk_size=chunk, **case.config).compute(
        hidden, weight, case.labels, bias=bias, weights=weights
    )
    inputs = [hidden, weight, bias, weights]
    copies = [None if t is None else t.detach().clone().requires_grad_(True) for t in inputs]
    logits = copies[0] @ copies[1].T + (copies[2] if copies[2] is not None else 0)
    dense = losskit.build("token_ce", **case.config).compute(logits, case.labels, weights=copies[3])
    tok.assert_close(fused.loss, dense.loss, rtol=1e-5, atol=1e-6, what="loss")
    for key in ("ce", "z_loss"):
        tok.assert_close(fused.parts[key], dense.parts[key], rtol=1e-5, atol=1e-6, what=key)
    for key in ("accuracy", "num_tokens", "mean_log_z"):
        tok.assert_close(fused.metrics[key], dense.metrics[key], rtol=1e-5, atol=1e-6, what=key)
    upstream = torch.linspace(0.5, 2.0, max(dense.loss.numel(), 1)).reshape(dense.loss.shape)
    for g, w, name in zip(_grads(fused.loss, inputs, upstream), _grads(dense.loss, copies, upstream), "hidden weight bias weights".split()):
        g = torch.zeros_like(w) if g is None and w is not None else g
        if w is None:
            assert g is None or not g.any(), name
            continue
        tok.assert_close(g, w, rtol=1e-5, atol=1e-5, what=f"grad of {name}")


@given(st.data())
def test_matches_float64_reference(tok, data):
    case = tok.draw_case(data, max_v=6)
    hidden, weight, _ = _head(case, 3, torch.float64, data.draw(st.integers(0, 999)), False)
    out = losskit.build("linear_token_ce", chunk_size=2, **case.config)(hidden, weight, case.labels, weights=case.weights)
    ref_h, ref_w = hidden.detach().clone().requires_grad_(True), weight.detach().clone().requires_grad_(True)
    ref = tok.reference(ref_h @ ref_w.T, case.labels, **case.reference_kwargs())[0]
    tok.assert_close(out, ref, rtol=1e-9, atol=1e-12, what="loss")
    upstream = torch.full_like(ref, 1.5)
    for g, w in zip(_grads(out, [hidden, weight], upstream), _grads(ref, [ref_h, ref_w], upstream)):
        tok.assert_close(g, w, rtol=1e-9, atol=1e-12, what="grad")


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_with_bias_and_weights(reduction):
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, generator=gen, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(2, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[1, -100, 4, 0], [2, 3, -100, 1]])
    loss_fn = losskit.build("linear_token_ce", reduction=reduction, label_smoothing=0.1, z_loss=0.05, chunk_size=3)
    assert torch.autograd.gradcheck(
        lambda h, w, b, tw: loss_fn(h, w, labels, bias=b, weights=tw), (hidden, weight, bias, weights)
    )


def test_fused_backward_twice_through_retained_graph():
    gen = torch.Generator().manual_seed(4)
    hidden = torch.randn(6, 4, generator=gen, requires_grad=True)
    weight = torch.randn(9, 4, generator=gen, requires_grad=True)
    labels = torch.randint(0, 9, (6,), generator=gen)
    loss = losskit.build("linear_token_ce", chunk_size=4)(hidden, weight, labels)
    first = [g.clone() for g in torch.autograd.grad(loss, [hidden, weight], torch.tensor(2.0), retain_graph=True)]
    second = torch.autograd.grad(loss, [hidden, weight], torch.tensor(-0.5))
    for a, b in zip(first, second):
        torch.testing.assert_close(b, a * -0.25)


def test_frozen_head_gets_no_gradient_and_parts_are_reported():
    hidden = torch.randn(1, 5, 4, requires_grad=True)
    weight = torch.randn(7, 4)  # frozen LM head
    labels = torch.randint(0, 7, (1, 5))
    out = losskit.build("linear_token_ce", z_loss=0.1).compute(hidden, weight, labels)
    out.loss.backward()
    assert weight.grad is None and hidden.grad is not None and hidden.grad.abs().sum() > 0
    torch.testing.assert_close(out.loss.detach(), out.parts["ce"] + out.parts["z_loss"])


def test_no_grad_and_reduced_precision(tok):
    gen = torch.Generator().manual_seed(5)
    hidden, weight = torch.randn(3, 5, 8, generator=gen), torch.randn(11, 8, generator=gen)
    labels = torch.randint(0, 11, (3, 5), generator=gen)
    ref = tok.reference(hidden.double() @ weight.double().T, labels, shift=True)[0]
    with torch.no_grad():
        tok.assert_close(losskit.build("linear_token_ce")(hidden, weight, labels), ref, what="no_grad")
    h16, w16 = hidden.bfloat16().requires_grad_(True), weight.bfloat16().requires_grad_(True)
    out = losskit.build("linear_token_ce")(h16, w16, labels)
    assert out.dtype == torch.float32
    ref16 = tok.reference(h16.detach().double() @ w16.detach().double().T, labels, shift=True)[0]
    tok.assert_close(out, ref16, rtol=1e-5, what="bf16")
    out.backward()
    assert h16.grad.dtype == torch.bfloat16 and w16.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("num_items", [None, 3])
def test_all_ignored_gives_connected_zero(num_items):
    hidden, weight = torch.randn(2, 4, 3, requires_grad=True), torch.randn(5, 3, requires_grad=True)
    out = losskit.build("linear_token_ce")(hidden, weight, torch.full((2, 4), -100), num_items_in_batch=num_items)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert not hidden.grad.any() and not weight.grad.any()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"weight": torch.randn(7, 5)}, ValueError, r"weight: size 5 at dim 1 does not match the hidden size H of hidden \(4\)"),
        ({"weight": torch.randn(7)}, ValueError, r"weight: expected a 2-D float tensor \[V, H\]"),
        ({"bias": torch.randn(6)}, ValueError, "bias: size 6 at dim 0 does not match the vocabulary size V"),
        ({"labels": torch.zeros(2, 3)}, TypeError, "labels: expected an integer tensor"),
        ({"labels": torch.zeros(2, 4, dtype=torch.long)}, ValueError, r"labels: expected shape \(2, 3\)"),
        ({"labels": torch.full((2, 3), 7)}, ValueError, r"labels: expected class indices in \[0, 7\)"),
        ({"hidden": torch.randn(4)}, ValueError, "hidden: expected a 2-D or 3-D"),
        ({"num_items_in_batch": 0}, ValueError, "num_items_in_batch"),
        ({"num_items_in_batch": 1.5}, TypeError, "num_items_in_batch"),
        ({"weights": torch.ones(2, 2)}, ValueError, r"weights: expected shape \(2, 3\)"),
    ],
)
def test_bad_input(kwargs, error, match):
    call = {"hidden": torch.randn(2, 3, 4), "weight": torch.randn(7, 4), "labels": torch.zeros(2, 3, dtype=torch.long)}
    call.update(kwargs)
    with pytest.raises(error, match=match):
        losskit.build("linear_token_ce")(call.pop("hidden"), call.pop("weight"), call.pop("labels"), **call)


def test_conformance_kit():
    assert check_loss("linear_token_ce").ok


@given(st.data())
def test_num_items_in_batch_makes_accumulation_exact(tok, data):
    """Micro-batches with the global count: accumulated loss and hidden/weight gradients equal the full batch."""
    micro, t, v = data.draw(st.integers(2, 3)), data.draw(st.integers(2, 5)), data.draw(st.integers(2, 7))
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 999)))
    hidden = torch.randn(micro * 2, t, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, v, (micro * 2, t), generator=gen).masked_fill(torch.rand(micro * 2, t, generator=gen) < 0.4, -100)
    loss_fn = losskit.build("linear_token_ce", chunk_size=data.draw(st.sampled_from([None, 1, 3])), z_loss=1e-2)
    full = loss_fn(hidden, weight, labels)
    full_grads = torch.autograd.grad(full, [hidden, weight])
    count = max(int((labels[:, 1:] != -100).sum()), 1)
    w = weight.detach().clone().requires_grad_(True)
    total, grad_h = 0.0, torch.zeros_like(hidden)
    for part in range(micro):
        rows = slice(2 * part, 2 * part + 2)
        h = hidden.detach()[rows].clone().requires_grad_(True)
        value = loss_fn(h, w, labels[rows], num_items_in_batch=count)
        value.backward()
        total = total + value.detach()
        grad_h[rows] = h.grad
    tok.assert_close(total, full.detach(), rtol=1e-10, atol=1e-12, what="accumulated loss")
    tok.assert_close(grad_h, full_grads[0], rtol=1e-10, atol=1e-12, what="grad of hidden")
    tok.assert_close(w.grad, full_grads[1], rtol=1e-10, atol=1e-12, what="accumulated grad of weight")
