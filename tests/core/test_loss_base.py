"""Loss base class, LossOutput, reduce and the shared input checks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losskit
from losskit.checks import check_float, check_index, check_same_device, check_size, to_float32
from losskit.errors import ConfigError
from losskit.loss import reduce
from losskit_focal import FocalConfig, FocalLoss


def test_loss_output_detaches_metrics_and_keeps_parts():
    x = torch.ones(3, requires_grad=True)
    out = losskit.LossOutput(loss=(x * 2).sum(), parts={"p": x * 3}, metrics={"m": x * 4, "n": 1.5})
    assert out.loss.requires_grad and out.parts["p"].requires_grad
    assert not out.metrics["m"].requires_grad
    assert isinstance(out.metrics["n"], torch.Tensor) and out.metrics["n"].item() == 1.5


@given(st.lists(st.floats(-10, 10), min_size=0, max_size=7))
def test_reduce_matches_definitions(values):
    t = torch.tensor(values, dtype=torch.float64)
    assert torch.equal(reduce(t, "none"), t)
    assert reduce(t, "sum").item() == pytest.approx(sum(values))
    expected_mean = sum(values) / len(values) if values else 0.0
    assert reduce(t, "mean").item() == pytest.approx(expected_mean)
    assert reduce(t, "mean", normalizer=4.0).item() == pytest.approx(sum(values) / 4.0)


def test_reduce_empty_mean_is_a_connected_zero():
    x = torch.zeros(0, requires_grad=True)
    out = reduce(x * 2, "mean")
    assert out.item() == 0.0 and not torch.isnan(out)
    out.backward()
    assert x.grad is not None and x.grad.shape == (0,)


def test_forward_returns_compute_loss():
    loss = FocalLoss()
    x, y = torch.randn(4, 3), (torch.rand(4, 3) > 0.5).float()
    assert torch.equal(loss(x, y), loss.compute(x, y).loss)
    assert "mean_p_t" in loss.compute(x, y).metrics


def test_constructor_checks_config_type():
    with pytest.raises(TypeError, match="config: expected an instance of FocalConfig, got dict"):
        FocalLoss({"gamma": 1.0})
    assert FocalLoss().config == FocalConfig()


def test_reduced_precision_inputs_give_fp32_result():
    loss = FocalLoss()
    x, y = torch.randn(4, 3), (torch.rand(4, 3) > 0.5).float()
    for dtype in (torch.float16, torch.bfloat16):
        assert loss(x.to(dtype), y.to(dtype)).dtype == torch.float32


def test_config_assignment_is_validated():
    cfg = FocalConfig()
    with pytest.raises(ConfigError, match="^alpha: Input should be less than or equal to 1"):
        cfg.alpha = 3.0


@pytest.mark.parametrize(
    ("call", "exc", "message"),
    [
        (lambda: check_float([1.0], "query"), TypeError, "query: expected a torch.Tensor, got list"),
        (lambda: check_float(torch.ones(2, dtype=torch.long), "query"), TypeError, "query: expected a floating-point tensor, got dtype torch.int64"),
        (lambda: check_float(torch.ones(2), "query", 2, layout="[N, D]"), ValueError, r"query: expected a 2-D float tensor \[N, D\], got shape \(2,\)"),
        (lambda: check_float(torch.ones(2, 2, 2), "x", (1, 2)), ValueError, "x: expected a 1-D or 2-D float tensor"),
        (lambda: check_float(torch.tensor([1.0, float("nan")]), "x", finite=True), ValueError, "x: expected finite values"),
        (lambda: check_index(torch.ones(3), "labels"), TypeError, "labels: expected an integer tensor, got dtype torch.float32"),
        (lambda: check_index(torch.ones(3, dtype=torch.bool), "labels"), TypeError, "labels: expected an integer tensor, got dtype torch.bool"),
        (lambda: check_index(torch.ones(3, dtype=torch.float16), "mask", allow_bool=True), TypeError, "mask: expected an integer or bool tensor"),
        (lambda: check_size(torch.ones(3, 2), "keys", 0, 4, "query's batch size"), ValueError, r"keys: size 3 at dim 0 does not match query's batch size \(4\)"),
    ],
)
def test_checks_name_the_argument(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_checks_accept_valid_input():
    t = torch.ones(2, 3)
    assert check_float(t, "x", 2) is t
    assert check_index(torch.ones(3, dtype=torch.bool), "m", 1, allow_bool=True).dtype == torch.bool
    check_same_device(a=t, b=None, c=t)
    assert to_float32(t.half()).dtype == torch.float32
    assert to_float32(t.double()).dtype == torch.float64
