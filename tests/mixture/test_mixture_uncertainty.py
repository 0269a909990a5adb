"""Uncertainty weighting (Kendall, Gal & Cipolla 2018) against hand computation."""

from __future__ import annotations

import math

import pytest
import torch

import losskit


def uncertainty_mixture(**extra):
    return losskit.build({
        "name": "mixture",
        "terms": {"reg": {"name": "echo"}, "cls": {"name": "echo"}},
        "weights": {"reg": 1.0, "cls": 3.0},
        "weighting": "uncertainty",
        "term_options": {"reg": {"init_log_var": 0.3}, "cls": {"task": "classification", "init_log_var": -0.7}},
        **extra,
    })


def test_value_and_gradients_match_the_formula(echo_plugin):
    mixture = uncertainty_mixture()
    a = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    out = mixture.compute(reg=(a,), cls=(b,))
    # w * (c * exp(-s) * L + s / 2), c = 1/2 (regression) or 1 (classification)
    want = 1.0 * (0.5 * math.exp(-0.3) * 2.0 + 0.15) + 3.0 * (math.exp(0.7) * 0.5 - 0.35)
    assert out.loss.item() == pytest.approx(want, rel=1e-6)
    assert out.metrics["weight/reg"].item() == pytest.approx(0.5 * math.exp(-0.3), rel=1e-6)
    assert out.metrics["weight/cls"].item() == pytest.approx(3.0 * math.exp(0.7), rel=1e-6)
    assert out.metrics["log_var/cls"].item() == pytest.approx(-0.7)
    s_reg, s_cls = mixture.weighting.log_vars["reg"], mixture.weighting.log_vars["cls"]
    g_a, g_b, g_reg, g_cls = torch.autograd.grad(out.loss, [a, b, s_reg, s_cls])
    assert g_a.item() == pytest.approx(0.5 * math.exp(-0.3), rel=1e-6)
    assert g_b.item() == pytest.approx(3.0 * math.exp(0.7), rel=1e-6)
    # d/ds = w * (-c exp(-s) L + 1/2)
    assert g_reg.item() == pytest.approx(-0.5 * math.exp(-0.3) * 2.0 + 0.5, rel=1e-5)
    assert g_cls.item() == pytest.approx(3.0 * (-math.exp(0.7) * 0.5 + 0.5), rel=1e-5)


def test_log_variance_settles_at_log_of_c_times_twice_the_loss(echo_plugin):
    """The stationary point of c exp(-s) L + s/2 is s* = log(2 c L): gradient descent finds it."""
    mixture = uncertainty_mixture()
    opt = torch.optim.SGD(mixture.parameters(), lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        mixture(reg=(torch.tensor(2.0),), cls=(torch.tensor(0.5),)).backward()
        opt.step()
    assert mixture.weighting.log_vars["reg"].item() == pytest.approx(math.log(2 * 0.5 * 2.0), abs=1e-3)
    assert mixture.weighting.log_vars["cls"].item() == pytest.approx(math.log(2 * 1.0 * 0.5), abs=1e-3)


def test_clamp_bounds_the_log_variance_in_the_forward(echo_plugin):
    mixture = uncertainty_mixture(uncertainty={"clamp": [-0.5, 0.1]})
    out = mixture.compute(reg=(torch.tensor(2.0),), cls=(torch.tensor(0.5),))
    assert out.metrics["log_var/reg"].item() == pytest.approx(0.1)
    assert out.metrics["log_var/cls"].item() == pytest.approx(-0.5)
    grads = torch.autograd.grad(out.loss, list(mixture.weighting.log_vars.values()))
    assert [g.item() for g in grads] == [0.0, 0.0]  # clipped: no gradient outside the range


def test_parameter_groups_exclude_log_variances_from_weight_decay(echo_plugin):
    mixture = losskit.build({
        "name": "mixture",
        "terms": {"a": {"name": "echo", "learn_scale": True}, "b": {"name": "echo"}},
        "weighting": "uncertainty",
    })
    groups = mixture.parameter_groups(weighting_lr=0.01)
    assert groups[0]["params"] == [mixture.terms["a"].scale] and "weight_decay" not in groups[0]
    assert groups[1] == {"params": mixture.weighting_parameters(), "weight_decay": 0.0, "lr": 0.01}
    assert len(groups[1]["params"]) == 2
    opt = torch.optim.AdamW(groups, lr=0.1, weight_decay=0.5)
    for p in mixture.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert [p.item() for p in mixture.weighting_parameters()] == [0.0, 0.0]  # no decay
    assert mixture.terms["a"].scale.item() < 1.0  # decayed by the optimizer's default


def test_log_variance_init_is_learnable_not_schedulable(echo_plugin):
    mixture = uncertainty_mixture()
    fields = mixture.learnable_fields()
    assert fields["term_options.reg.init_log_var"] == "weighting.log_vars.reg"
    with pytest.raises(losskit.errors.ConfigError, match="learnable parameter"):
        losskit.Curriculum(mixture, {"term_options.reg.init_log_var": {"kind": "constant", "value": 0.0}})
    # the static weights still multiply, so they can be scheduled
    losskit.Curriculum(mixture, {"weights.cls": {"kind": "linear", "start": 0.0, "end": 1.0, "steps": 10}})
    assert mixture.config.weights["cls"] == 0.0
