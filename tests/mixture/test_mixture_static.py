"""Static mixture: value, gradient, parts and metrics against hand computation; calling conventions."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

import losskit
from losskit.testing import check_loss


def focal_inputs(n, c, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=dtype).requires_grad_(True)
    return x, (torch.rand(n, c, generator=g) < 0.3).to(dtype)


def boxes(n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype)
    wh = torch.rand(n, 2, generator=g, dtype=dtype) + 0.1
    return torch.cat([xy, xy + wh], 1)


def test_weighted_sum_matches_hand_computation_in_value_and_gradient():
    mixture = losskit.build({
        "name": "mixture",
        "terms": {"cls": {"name": "focal", "gamma": 1.5}, "box": {"name": "bbox", "l1_weight": 2.0}},
        "weights": {"cls": 0.7, "box": 3.0},
    })
    x, y = focal_inputs(5, 3, 0)
    target = boxes(4, 1)
    pred = (target + 0.05 * torch.randn(4, 4, dtype=torch.float64)).requires_grad_(True)
    out = mixture.compute(cls={"logits": x, "targets": y}, box=(pred, target))

    focal = sigmoid_focal_loss(x, y, alpha=0.25, gamma=1.5, reduction="mean")
    box = (2.0 * (pred - target).abs().sum(1) + generalized_box_iou_loss(pred, target, reduction="none")).mean()
    want = 0.7 * focal + 3.0 * box
    torch.testing.assert_close(out.loss, want)
    torch.testing.assert_close(out.parts["cls"], focal)
    torch.testing.assert_close(out.parts["box"], box)
    assert set(out.metrics) == {"weight/cls", "weight/box", "cls/mean_p_t", "box/mean_iou"}
    assert out.metrics["weight/box"].item() == 3.0
    grads = torch.autograd.grad(out.loss, [x, pred])
    torch.testing.assert_close(grads, torch.autograd.grad(want, [x, pred]))


def test_calling_conventions_agree(make_echo_mixture):
    mixture = make_echo_mixture(2, weights={"t1": 2.0})
    a, b = torch.tensor(1.5), torch.tensor(-0.25)
    want = 1.5 + 2.0 * -0.25
    assert mixture(t0={"value": a}, t1=(b,)).item() == want
    assert mixture({"t0": losskit.Inputs((a,), {}), "t1": [b]}).item() == want


def test_missing_and_unexpected_terms_are_clear_errors(make_echo_mixture):
    mixture = make_echo_mixture(2)
    v = torch.tensor(1.0)
    with pytest.raises(TypeError, match=r"missing inputs for term\(s\) \['t1'\].*expected exactly the terms \['t0', 't1'\]"):
        mixture(t0=(v,))
    with pytest.raises(TypeError, match=r"unexpected term\(s\) \['t2'\]"):
        mixture(t0=(v,), t1=(v,), t2=(v,))
    with pytest.raises(TypeError, match="not both"):
        mixture({"t0": (v,)}, t1=(v,))
    with pytest.raises(TypeError, match="t0: expected the term's inputs"):
        mixture(t0=v, t1=(v,))


def test_a_term_that_returns_a_vector_is_a_clear_error(echo_plugin):
    mixture = losskit.build({"name": "mixture", "terms": {"t0": {"name": "echo", "misbehave": True}}})
    with pytest.raises(ValueError, match=r"t0: the term returned a loss of shape \(3,\), expected a scalar"):
        mixture(t0=(torch.ones(3),))


def test_replacing_terms_after_building_is_refused(make_echo_mixture):
    mixture = make_echo_mixture(1)
    mixture.config.terms = {"t0": {"name": "echo", "scale": 2.0}}
    with pytest.raises(RuntimeError, match="build a new mixture"):
        mixture(t0=(torch.tensor(1.0),))


def test_term_parameters_are_mixture_parameters(make_echo_mixture):
    mixture = losskit.build({"name": "mixture", "terms": {"a": {"name": "echo", "learn_scale": True}, "b": {"name": "echo"}}})
    assert [n for n, _ in mixture.named_parameters()] == ["terms.a.scale"]
    loss = mixture(a=(torch.tensor(3.0),), b=(torch.tensor(1.0),))
    loss.backward()
    assert mixture.terms["a"].scale.grad.item() == 3.0
    assert mixture.learnable_fields() == {"terms.a.scale": "terms.a.scale"}
    assert mixture.parameter_groups(weight_decay=0.1) == [{"params": [mixture.terms["a"].scale], "weight_decay": 0.1}]


@given(
    w=st.floats(0.0, 1e3, allow_nan=False),
    n=st.integers(1, 6),
    c=st.integers(1, 4),
    gamma=st.floats(0.0, 4.0),
    reduction=st.sampled_from(["mean", "sum"]),
    seed=st.integers(0, 2**16),
)
def test_one_term_with_weight_w_is_w_times_that_term(w, n, c, gamma, reduction, seed):
    spec = {"name": "focal", "gamma": gamma, "reduction": reduction}
    term = losskit.build(spec)
    mixture = losskit.build({"name": "mixture", "terms": {"only": spec}, "weights": {"only": w}})
    x, y = focal_inputs(n, c, seed)
    got = mixture(only=(x, y))
    want = w * term(x, y)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, x)[0], torch.autograd.grad(want, x)[0])


def test_low_precision_inputs_give_fp32():
    mixture = losskit.build({"name": "mixture", "terms": {"a": {"name": "focal"}}})
    x, y = focal_inputs(4, 2, 3, dtype=torch.bfloat16)
    assert mixture(a=(x, y)).dtype == torch.float32


def _focal_pair_inputs(size, *, dtype, device, generator):
    """Two focal terms on [5, 3] logits (``size`` holds the default mixture's dims, not used here)."""

    def draw():
        x = torch.randn(5, 3, generator=generator, dtype=dtype).to(device).requires_grad_(True)
        return losskit.Inputs((x, (torch.rand(5, 3, generator=generator) < 0.3).to(dtype)), {})

    return losskit.Inputs(({"a": draw(), "b": draw()},), {})


@pytest.mark.parametrize("weighting", ["static", "uncertainty"])
def test_conformance_kit_on_a_focal_mixture(weighting):
    config = {
        "terms": {"a": {"name": "focal"}, "b": {"name": "focal", "gamma": 0.5, "reduction": "sum"}},
        "weights": {"b": 0.3},
        "weighting": weighting,
    }
    report = check_loss("mixture", config=config, example_inputs=_focal_pair_inputs, seeds=2)
    statuses = {r.name: r.status for r in report.results}
    assert statuses["gradcheck"] == "passed" and statuses["reduction"] == "not applicable"


def test_curriculum_reaches_term_fields_and_declared_setters(echo_plugin):
    mixture = losskit.build({
        "name": "mixture",
        "terms": {
            "fixed": {"name": "echo", "scale": 2.0},
            "reset": {"name": "echo", "learn_scale": True, "resettable": True},
            "learned": {"name": "echo", "learn_scale": True},
        },
    })
    paths = losskit.curriculum.schedulable_paths(mixture)
    assert "terms.fixed.scale" in paths and "terms.reset.scale" in paths and "terms.learned.scale" not in paths
    curriculum = losskit.Curriculum(mixture, {
        "terms.fixed.scale": {"kind": "linear", "start": 1.0, "end": 3.0, "steps": 4},
        "terms.reset.scale": {"kind": "constant", "value": 5.0},
        "weights.learned": {"kind": "constant", "value": 0.5},
    })
    curriculum.step(2)
    one = torch.tensor(1.0)
    out = mixture.compute(fixed=(one,), reset=(one,), learned=(one,))
    assert mixture.terms["reset"].scale.item() == 5.0
    assert out.parts["fixed"].item() == 2.0 and out.loss.item() == 2.0 + 5.0 + 0.5 * 1.0


@pytest.mark.parametrize("weighting", ["uncertainty", "dwa", "gradnorm"])
def test_weighting_state_on_another_device_is_a_clear_error(make_echo_mixture, weighting):
    mixture = make_echo_mixture(2, weighting=weighting).to("meta")  # stands in for "left on the CPU"
    one = torch.tensor(1.0)
    with pytest.raises(ValueError, match=r"state is on meta but the term losses are on cpu; .*mixture.to\('cpu'\)"):
        mixture(t0=(one,), t1=(one,))
