"""``token_box`` and ``linear_token_box`` against the brute-force float64 reference (conftest.py).

Hypothesis draws the vocabulary (digits or 2-6 location bins at random ids, consecutive or
not), rows of text, ignored tokens and boxes (1-3 digits per number; malformed boxes when
``on_malformed: skip``), the box format, every term's weight, the reduction and the shift.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import losskit


def _check(ref, problem, *, num_boxes=None) -> None:
    cfg = problem.config
    loss = losskit.build({"name": "token_box", **cfg})
    logits = problem.logits.clone().requires_grad_(True)
    kw = {} if num_boxes is None else {"num_boxes": num_boxes}
    out = loss.compute(logits, problem.labels, **kw)
    x = problem.logits.clone().requires_grad_(True)
    want = ref.reference(x, problem.labels, cfg, shift=problem.shift, num_boxes=num_boxes)
    torch.testing.assert_close(out.loss, want["loss"], rtol=1e-9, atol=1e-10)
    if want["parts"] is not None:
        assert set(out.parts) == set(want["parts"])
        for name, value in want["parts"].items():
            torch.testing.assert_close(out.parts[name], value, rtol=1e-9, atol=1e-10, msg=name)
    assert int(out.metrics["num_boxes"]) == want["num_boxes"]
    torch.testing.assert_close(out.metrics["mean_iou"].item(), float(want["mean_iou"]), rtol=1e-9, atol=1e-10)
    total = want["num_boxes"] + want["malformed"]
    torch.testing.assert_close(out.metrics["malformed_share"].item(), want["malformed"] / max(total, 1))
    seed = torch.Generator().manual_seed(1)
    upstream = torch.rand(out.loss.shape, generator=seed, dtype=torch.float64)  # any vector-Jacobian product
    (got,) = torch.autograd.grad((out.loss * upstream).sum(), logits)
    if want["loss"].requires_grad:
        (expected,) = torch.autograd.grad((want["loss"] * upstream).sum(), x)
    else:
        expected = torch.zeros_like(x)
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10)


@given(st.data())
def test_token_box_matches_brute_force(ref, data) -> None:
    _check(ref, data.draw(ref.problems()))


@settings(max_examples=10)
@given(st.data())
def test_num_boxes_replaces_the_box_divisor(ref, data) -> None:
    problem = data.draw(ref.problems())
    problem.config["reduction"] = "mean"
    _check(ref, problem, num_boxes=data.draw(st.sampled_from([1, 3, 7.5])))


@settings(max_examples=15)
@given(st.data())
def test_linear_token_box_equals_token_box_on_the_materialised_logits(ref, data) -> None:
    problem = data.draw(ref.problems())
    v = problem.logits.shape[-1]
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 999)))
    hidden = torch.randn(*problem.labels.shape, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(v, generator=gen, dtype=torch.float64, requires_grad=True)
    linear = losskit.build({"name": "linear_token_box", **problem.config})
    plain = losskit.build({"name": "token_box", **problem.config})
    out = linear.compute(hidden, weight, problem.labels, bias=bias)
    want = plain.compute(torch.nn.functional.linear(hidden, weight, bias), problem.labels)
    torch.testing.assert_close(out.loss, want.loss, rtol=1e-10, atol=1e-12)
    assert out.metrics.keys() == want.metrics.keys()
    upstream = torch.rand(out.loss.shape, generator=gen, dtype=torch.float64)
    got = torch.autograd.grad((out.loss * upstream).sum(), (hidden, weight, bias), allow_unused=True)
    expected = torch.autograd.grad((want.loss * upstream).sum(), (hidden, weight, bias), allow_unused=True)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g if g is not None else torch.zeros(1), e if e is not None else torch.zeros(1))


def test_only_coordinate_rows_of_the_weight_get_gradients() -> None:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 12, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(20, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.full((2, 12), -100)
    labels[0, 1:10] = torch.tensor([10, 3, 12, 4, 12, 7, 12, 9, 11])
    loss = losskit.build("linear_token_box", ntl_wasserstein_weight=1.0)(hidden, weight, labels)
    loss.backward()
    touched = weight.grad.abs().sum(1) > 0
    assert touched[:10].any() and not touched[10:].any()  # digits 0-9 are ids 0-9


def test_gradcheck_on_a_small_problem() -> None:
    gen = torch.Generator().manual_seed(3)
    labels = torch.tensor([[-100, 10, 1, 2, 12, 3, 12, 5, 0, 12, 9, 11, 13]])
    logits = torch.randn(1, 13, 14, generator=gen, dtype=torch.float64, requires_grad=True)
    loss = losskit.build("token_box", iou_loss="ciou", ntl_mse_weight=0.3, ntl_wasserstein_weight=0.2)
    assert torch.autograd.gradcheck(lambda z: loss(z, labels), (logits,))
