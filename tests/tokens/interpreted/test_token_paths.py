"""``token_ce`` on both paths (PyTorch and the Triton kernel under the CPU interpreter):
every config field, per-class weights and soft cap against the float64 reference, dtypes,
the in-place option, and agreement of the two paths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import losskit

KERNELS = ["torch", "triton"]


def _logits(case, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(*case.rows_shape, case.v, generator=gen, dtype=torch.float64)).to(dtype).requires_grad_(True)


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_every_field_matches_reference(tok, interpreted, kernel, data):
    case = tok.draw_case(data, max_v=7, parity=True)
    num_items = data.draw(st.sampled_from([None, 5]), label="num_items") if case.config["reduction"] == "mean" else None
    loss_fn = losskit.build("token_ce", kernel=kernel, **case.config)
    logits = _logits(case)
    weights = None if case.weights is None else case.weights.clone().requires_grad_(True)
    out = loss_fn.compute(logits, case.labels, weights=weights, num_items_in_batch=num_items, **case.call_kwargs())
    ref_logits = logits.detach().clone().requires_grad_(True)
    ref_weights = None if weights is None else weights.detach().clone().requires_grad_(True)
    kw = case.reference_kwargs() | {"weights": ref_weights, "num_items_in_batch": num_items}
    ref, ref_ce, ref_z = tok.reference(ref_logits, case.labels, **kw)
    rtol = 1e-5 if kernel == "torch" else 1e-6  # Triton passes eps and the cap as fp32 scalars
    tok.assert_close(out.loss, ref, rtol=rtol, what="loss")
    tok.assert_close(out.parts["ce"], ref_ce, rtol=rtol, what="ce part")
    tok.assert_close(out.parts["z_loss"], ref_z, rtol=rtol, what="z_loss part")
    tok.assert_grads_match(
        out.loss, ref, [logits, weights], [ref_logits, ref_weights], ["logits", "weights"], rtol=rtol, atol=1e-7
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_triton_matches_torch_path_in_reduced_precision(tok, interpreted, dtype):
    gen = torch.Generator().manual_seed(3)
    logits = (2 * torch.randn(2, 9, 300, generator=gen)).to(dtype)
    labels = torch.randint(0, 300, (2, 9), generator=gen)
    labels[0, :4] = -100
    config = {"label_smoothing": 0.1, "z_loss": 1e-2, "softcap": 5.0}
    cw = torch.rand(300, generator=gen) + 0.5
    results = []
    for kernel in KERNELS:
        x = logits.clone().requires_grad_(True)
        loss = losskit.build("token_ce", kernel=kernel, **config)(x, labels, class_weights=cw)
        loss.backward()
        assert loss.dtype == torch.float32 and x.grad.dtype == dtype
        results.append((loss, x.grad))
    ref_in = logits.double().requires_grad_(True)
    ref = tok.reference(ref_in, labels, shift=True, class_weights=cw, **config)[0]
    ref.backward()
    for (loss, grad), kernel in zip(results, KERNELS):
        tok.assert_close(loss, ref, rtol=1e-5, what=f"{kernel} {dtype} loss")
        tok.assert_close(grad, ref_in.grad, rtol=2e-2, atol=2e-4, what=f"{kernel} {dtype} grad")


def test_triton_rows_longer_than_one_block(tok, interpreted, monkeypatch):
    """The online max / sum-exp across blocks: a row of V = 70 in blocks of 16."""
    from losskit_plugins.tokens import triton_kernel

    monkeypatch.setattr(triton_kernel, "MAX_BLOCK", 16)
    gen = torch.Generator().manual_seed(4)
    logits = (4 * torch.randn(5, 70, generator=gen, dtype=torch.float64)).requires_grad_(True)
    logits.data[1, 40:] = -float("inf")  # later blocks entirely masked
    labels = torch.tensor([3, 30, -100, 69, 0])
    loss = losskit.build("token_ce", kernel="triton", label_smoothing=0.2, z_loss=0.1)(logits, labels)
    ref_in = logits.detach().clone().requires_grad_(True)
    ref = losskit.build("token_ce", kernel="torch", label_smoothing=0.2, z_loss=0.1)(ref_in, labels)
    tok.assert_close(loss, ref, rtol=1e-6, what="loss")
    loss.backward()
    ref.backward()
    tok.assert_close(logits.grad, ref_in.grad, rtol=1e-6, atol=1e-9, what="grad")


def test_in_place_writes_the_gradient_into_the_logits(interpreted):
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 11, generator=gen).to(torch.bfloat16)
    labels = torch.tensor([1, 2, -100, 4, 5, 6])
    plain = logits.clone().requires_grad_(True)
    losskit.build("token_ce", kernel="triton")(plain, labels).backward()
    shared = logits.clone().requires_grad_(True)
    loss = losskit.build("token_ce", kernel="triton", in_place=True)(shared, labels)
    assert not torch.equal(shared.detach(), logits)  # overwritten by the forward pass
    loss.backward()
    assert shared.grad.data_ptr() == shared.data_ptr()  # the gradient lives in the logits' storage
    torch.testing.assert_close(shared.grad, plain.grad)


def test_ops_that_saved_the_logits_fail_loudly_after_in_place(interpreted):
    raw = torch.randn(4, 6, requires_grad=True)
    logits = raw.exp()  # exp saves its output for backward
    loss = losskit.build("token_ce", kernel="triton", in_place=True)(logits, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_second_backward_through_triton_graph_says_what_to_do(interpreted):
    logits = torch.randn(3, 5, requires_grad=True)
    loss = losskit.build("token_ce", kernel="triton")(logits, torch.tensor([0, 1, 2]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="kernel='torch'"):
        loss.backward()


@pytest.mark.parametrize("kernel", KERNELS)
def test_paths_agree_on_metrics_and_empty_batches(interpreted, kernel):
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 4, 9, generator=gen)
    labels = torch.randint(0, 9, (2, 4), generator=gen)
    out = losskit.build("token_ce", kernel=kernel).compute(logits, labels)
    ref = losskit.build("token_ce", kernel="torch").compute(logits, labels)
    for key in ("accuracy", "num_tokens", "mean_log_z"):
        torch.testing.assert_close(out.metrics[key], ref.metrics[key])
    for reduction, shape in (("mean", ()), ("sum", ()), ("none", (0,))):
        empty = torch.randn(0, 9, requires_grad=True)
        loss = losskit.build("token_ce", kernel=kernel, reduction=reduction)(empty, torch.zeros(0, dtype=torch.long))
        assert loss.shape == shape and float(loss.detach().sum()) == 0.0
        loss.sum().backward()
        assert empty.grad.shape == (0, 9)


def test_class_weights_match_f_cross_entropy(interpreted):
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(12, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 8, (12,), generator=gen)
    labels[3] = -100
    cw = torch.rand(8, generator=gen, dtype=torch.float64)
    want = F.cross_entropy(logits, labels, weight=cw, label_smoothing=0.3)
    (want_grad,) = torch.autograd.grad(want, logits)
    for kernel in KERNELS:
        got = losskit.build("token_ce", kernel=kernel, label_smoothing=0.3)(logits, labels, class_weights=cw)
        (grad,) = torch.autograd.grad(got, logits)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(grad, want_grad, rtol=1e-6, atol=1e-9)
