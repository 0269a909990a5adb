"""``linear_token_ce`` on both paths (PyTorch chunks, the Triton chunked path under the CPU
interpreter) against the float64 reference on the materialised logits: every config field,
per-class weights, soft cap, bias, chunk sizes, dtypes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import losskit


def _head(rows_shape, h, v, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*rows_shape, h, generator=gen, dtype=torch.float64).to(dtype)
    weight = (torch.randn(v, h, generator=gen, dtype=torch.float64) * 1.5).to(dtype)
    bias = torch.randn(v, generator=gen, dtype=torch.float64).to(dtype)
    return [t.requires_grad_(True) for t in (hidden, weight, bias)]


@pytest.mark.parametrize("kernel", ["torch", "triton"])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_every_field_matches_reference(tok, interpreted, kernel, data):
    case = tok.draw_case(data, max_v=6, parity=True)
    if case.config["reduction"] == "none":
        case.config["reduction"] = "sum"  # the Triton path serves the reduced losses ("none" recomputes in PyTorch)
    chunk = data.draw(st.sampled_from([None, 1, 2, 5]), label="chunk_size")
    hidden, weight, bias = _head(case.rows_shape, 3, case.v, data.draw(st.integers(0, 999), label="seed"))
    with_bias = data.draw(st.booleans(), label="bias")
    bias = bias if with_bias else None
    loss_fn = losskit.build("linear_token_ce", kernel=kernel, chunk_size=chunk, **case.config)
    out = loss_fn.compute(hidden, weight, case.labels, bias=bias, weights=case.weights, **case.call_kwargs())
    inputs = [t for t in (hidden, weight, bias) if t is not None]
    copies = [t.detach().clone().requires_grad_(True) for t in inputs]
    logits = copies[0] @ copies[1].T + (copies[2] if with_bias else 0)
    ref, ref_ce, ref_z = tok.reference(logits, case.labels, **case.reference_kwargs())
    rtol = 1e-9 if kernel == "torch" else 1e-6  # Triton passes eps and the cap as fp32 scalars
    tok.assert_close(out.loss, ref, rtol=rtol, atol=1e-9, what="loss")
    tok.assert_close(out.parts["ce"], ref_ce, rtol=rtol, atol=1e-9, what="ce part")
    tok.assert_close(out.parts["z_loss"], ref_z, rtol=rtol, atol=1e-9, what="z_loss part")
    got = torch.autograd.grad(out.loss, inputs, torch.tensor(1.5, dtype=torch.float64), allow_unused=True)
    want = torch.autograd.grad(ref, copies, torch.tensor(1.5, dtype=torch.float64), allow_unused=True)
    for g, w, name in zip(got, want, ["hidden", "weight", "bias"]):
        tok.assert_close(g, w, rtol=rtol, atol=1e-9, what=f"grad of {name}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_triton_path_in_the_inputs_dtype(tok, interpreted, dtype):
    """bf16 matmuls (fp32 accumulation) and the kernel in fp32: close to the float64 reference."""
    hidden, weight, bias = _head((2, 6), 16, 40, 3, dtype)
    labels = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(3))
    config = {"label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 8.0, "chunk_size": 5}
    loss = losskit.build("linear_token_ce", kernel="triton", **config)(hidden, weight, labels, bias=bias)
    assert loss.dtype == torch.float32
    loss.backward()
    copies = [t.detach().double().requires_grad_(True) for t in (hidden, weight, bias)]
    ref = tok.reference(copies[0] @ copies[1].T + copies[2], labels, shift=True, **{k: config[k] for k in ("label_smoothing", "z_loss", "softcap")})[0]
    ref.backward()
    tol = {"rtol": 3e-2, "atol": 3e-3} if dtype == torch.bfloat16 else {"rtol": 1e-4, "atol": 1e-6}
    tok.assert_close(loss, ref, what=f"{dtype} loss", **tol)
    for t, c, name in zip((hidden, weight, bias), copies, ("hidden", "weight", "bias")):
        assert t.grad.dtype == dtype
        tok.assert_close(t.grad, c.grad, what=f"{dtype} grad of {name}", **tol)


def test_triton_second_backward_says_what_to_do(interpreted):
    hidden, weight, _ = _head((4,), 3, 5, 4, torch.float32)
    loss = losskit.build("linear_token_ce", kernel="triton")(hidden, weight, torch.tensor([0, 1, 2, 3]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="kernel='torch'"):
        loss.backward()


def test_triton_frozen_head_and_empty_batch(interpreted):
    hidden, weight, _ = _head((4,), 3, 5, 5, torch.float32)
    weight.requires_grad_(False)
    loss = losskit.build("linear_token_ce", kernel="triton")(hidden, weight, torch.tensor([0, 1, -100, 3]))
    loss.backward()
    assert weight.grad is None and hidden.grad.shape == hidden.shape
    empty = torch.randn(0, 3, requires_grad=True)
    loss = losskit.build("linear_token_ce", kernel="triton")(empty, weight, torch.zeros(0, dtype=torch.long))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert empty.grad.shape == (0, 3)
