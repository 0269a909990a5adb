"""``token_ce`` against the brute-force float64 reference: values, gradients, metrics, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import losskit
from losskit.testing import check_loss


def _logits(case, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(*case.rows_shape, case.v, generator=gen, dtype=torch.float64)).to(dtype).requires_grad_(True)


@given(st.data())
def test_matches_reference_value_and_gradient(tok, data):
    case = tok.draw_case(data)
    loss_fn = losskit.build("token_ce", **case.config)
    logits = _logits(case)
    weights = None if case.weights is None else case.weights.clone().requires_grad_(True)
    out = loss_fn.compute(logits, case.labels, weights=weights)
    ref_logits = logits.detach().clone().requires_grad_(True)
    ref_weights = None if weights is None else weights.detach().clone().requires_grad_(True)
    kw = case.reference_kwargs() | {"weights": ref_weights}
    ref, ref_ce, ref_z = tok.reference(ref_logits, case.labels, **kw)
    tok.assert_close(out.loss, ref, what="loss")
    tok.assert_close(out.parts["ce"], ref_ce, what="ce part")
    tok.assert_close(out.parts["z_loss"], ref_z, what="z_loss part")
    assert out.loss.shape == ref.shape
    tok.assert_grads_match(
        out.loss, ref, [logits, weights], [ref_logits, ref_weights], ["logits", "weights"]
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_reduced_precision_is_computed_in_fp32(tok, dtype):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 7, 50, generator=gen).to(dtype).requires_grad_(True)
    labels = torch.randint(0, 50, (2, 7), generator=gen)
    out = losskit.build("token_ce", z_loss=1e-3)(logits, labels)
    assert out.dtype == torch.float32
    ref, _, _ = tok.reference(logits.detach().double(), labels, shift=True, z_loss=1e-3)
    tok.assert_close(out, ref, rtol=1e-5, what=f"{dtype} loss")
    out.backward()
    assert logits.grad.dtype == dtype
    ref_in = logits.detach().double().requires_grad_(True)
    tok.reference(ref_in, labels, shift=True, z_loss=1e-3)[0].backward()
    tok.assert_close(logits.grad, ref_in.grad, rtol=1e-2, atol=1e-3, what=f"{dtype} grad")


def test_transformers_causal_convention():
    """ForCausalLMLoss: labels padded right and shifted, logits upcast; sum / num_items_in_batch."""
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 6, 11, generator=gen, requires_grad=True)
    labels = torch.randint(0, 11, (3, 6), generator=gen)
    labels[0, :3] = -100
    shifted = F.pad(labels, (0, 1), value=-100)[..., 1:]
    want = F.cross_entropy(logits.float().view(-1, 11), shifted.reshape(-1), ignore_index=-100, reduction="sum") / 7
    got = losskit.build("token_ce")(logits, labels, num_items_in_batch=7)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    mean = F.cross_entropy(logits.view(-1, 11), shifted.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(losskit.build("token_ce")(logits, labels), mean, rtol=1e-6, atol=1e-7)


@given(st.data())
def test_num_items_in_batch_makes_accumulation_exact(tok, data):
    """N micro-batches with the global supervised count sum to the full-batch loss and gradient."""
    micro = data.draw(st.integers(2, 4), label="micro-batches")
    t, v = data.draw(st.integers(2, 6)), data.draw(st.integers(2, 8))
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 999)))
    logits = torch.randn(micro * 2, t, v, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, v, (micro * 2, t), generator=gen)
    labels = labels.masked_fill(torch.rand(micro * 2, t, generator=gen) < data.draw(st.sampled_from([0.0, 0.5, 0.9])), -100)
    loss_fn = losskit.build("token_ce", z_loss=1e-2)
    full = loss_fn(logits, labels)
    (full_grad,) = torch.autograd.grad(full, logits)
    count = int((F.pad(labels, (0, 1), value=-100)[..., 1:] != -100).sum())
    total, grad = 0.0, torch.zeros_like(logits)
    for part in range(micro):
        rows = slice(2 * part, 2 * part + 2)
        if count == 0:  # nothing supervised: any positive count gives the same zero
            count = 1
        x = logits.detach()[rows].clone().requires_grad_(True)
        value = loss_fn(x, labels[rows], num_items_in_batch=torch.tensor(count))
        value.backward()
        total = total + value.detach()
        grad[rows] = x.grad
    tok.assert_close(total, full.detach(), rtol=1e-10, atol=1e-12, what="accumulated loss")
    tok.assert_close(grad, full_grad, rtol=1e-10, atol=1e-12, what="accumulated grad")


@pytest.mark.parametrize("num_items", [None, 5])
def test_all_ignored_gives_connected_zero(num_items):
    logits = torch.randn(2, 4, 6, requires_grad=True)
    labels = torch.full((2, 4), -100)
    out = losskit.build("token_ce", z_loss=0.1).compute(logits, labels, num_items_in_batch=num_items)
    assert out.loss.item() == 0.0 and out.loss.requires_grad
    out.loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    assert out.metrics["num_tokens"].item() == 0 and out.metrics["accuracy"].item() == 0.0


def test_metrics_over_supervised_tokens():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [9.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2, 2, -100])
    out = losskit.build("token_ce").compute(logits, labels)
    assert out.metrics["num_tokens"].item() == 3
    torch.testing.assert_close(out.metrics["accuracy"], torch.tensor(2 / 3))
    lse = torch.logsumexp(logits[:3], -1).mean()
    torch.testing.assert_close(out.metrics["mean_log_z"], lse)
    assert not any(m.requires_grad for m in out.metrics.values())


def test_shift_defaults_by_rank():
    logits = torch.randn(1, 3, 4)
    labels = torch.tensor([[1, 2, 3]])
    three_d = losskit.build("token_ce", reduction="none")(logits, labels)
    assert three_d[0, -1] == 0  # nothing left to predict at the last position
    two_d = losskit.build("token_ce", reduction="none")(logits[0], labels[0])
    torch.testing.assert_close(two_d, F.cross_entropy(logits[0], labels[0], reduction="none"))
    torch.testing.assert_close(losskit.build("token_ce", shift=False)(logits, labels), F.cross_entropy(logits[0], labels[0]))


def test_config_change_applies_at_call_time():
    loss_fn = losskit.build("token_ce")
    logits, labels = torch.randn(5, 7), torch.randint(0, 7, (5,))
    before = loss_fn(logits, labels)
    loss_fn.config.label_smoothing = 0.3
    after = loss_fn(logits, labels)
    torch.testing.assert_close(after, F.cross_entropy(logits, labels, label_smoothing=0.3))
    assert not torch.equal(before, after)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda f: f(torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long)), ValueError, r"labels: expected shape \(2, 3\)"),
        (lambda f: f(torch.randn(2, 3, 5), torch.zeros(2, 3)), TypeError, "labels: expected an integer tensor"),
        (lambda f: f(torch.randn(2, 3, 5), torch.full((2, 3), 5)), ValueError, r"labels: expected class indices in \[0, 5\)"),
        (lambda f: f(torch.randn(2, 3, 5), torch.full((2, 3), -1)), ValueError, "ignore_index=-100"),
        (lambda f: f(torch.randn(5), torch.zeros(5, dtype=torch.long)), ValueError, "logits: expected a 2-D or 3-D"),
        (lambda f: f(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, dtype=torch.long)), TypeError, "logits: expected a floating"),
        (lambda f: f(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), num_items_in_batch=0), ValueError, "num_items_in_batch: expected a finite positive"),
        (lambda f: f(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), num_items_in_batch=-3), ValueError, "num_items_in_batch"),
        (lambda f: f(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), num_items_in_batch=2.5), TypeError, "num_items_in_batch: expected a positive int"),
        (lambda f: f(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), num_items_in_batch=True), TypeError, "num_items_in_batch: expected a positive int"),
        (lambda f: f(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), num_items_in_batch=torch.tensor(True)), TypeError, "integer or floating tensor"),
        (lambda f: f(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), num_items_in_batch=torch.tensor([2, 3])), ValueError, "expected one value"),
        (lambda f: f(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), num_items_in_batch=torch.tensor(-1.5)), ValueError, "positive count"),
        (lambda f: f(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), num_items_in_batch=torch.tensor(0)), ValueError, "positive count"),
        (lambda f: f(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), weights=torch.ones(3)), ValueError, r"weights: expected shape \(4,\)"),
        (lambda f: f(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), weights=torch.ones(4, dtype=torch.long)), TypeError, "weights: expected a floating"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(losskit.build("token_ce"))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32])
@pytest.mark.parametrize("name", ["token_ce", "linear_token_ce"])
def test_labels_of_any_integer_dtype(name, dtype):
    gen = torch.Generator().manual_seed(6)
    hidden, weight = torch.randn(2, 5, 3, generator=gen), torch.randn(7, 3, generator=gen)
    labels = torch.randint(0, 7, (2, 5), generator=gen)
    if dtype != torch.uint8:  # uint8 cannot hold -100
        labels[0, 1] = -100
    inputs = (hidden @ weight.T,) if name == "token_ce" else (hidden, weight)
    loss_fn = losskit.build(name)
    torch.testing.assert_close(loss_fn(*inputs, labels.to(dtype)), loss_fn(*inputs, labels))


def test_num_items_as_float_tensor_like_transformers_5():
    logits, labels = torch.randn(4, 5), torch.randint(0, 5, (4,))
    loss_fn = losskit.build("token_ce")
    torch.testing.assert_close(loss_fn(logits, labels, num_items_in_batch=torch.tensor(3.0)), loss_fn(logits, labels, num_items_in_batch=3))


def test_num_items_rejected_without_mean():
    with pytest.raises(ValueError, match="only used with reduction='mean'"):
        losskit.build("token_ce", reduction="sum")(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), num_items_in_batch=4)


def test_conformance_kit():
    assert check_loss("token_ce").ok
