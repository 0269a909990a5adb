"""The conformance kit: every registered loss passes it, and it catches broken losses."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch
from pydantic import Field

import losskit
from losskit.bench import BenchSpec
from losskit.loss import reduce
from losskit.registry import Registry
from losskit.testing import CHECKS, check_loss


@pytest.mark.parametrize("name", [s.qualified_name for s in losskit.registry.default_registry().specs()])
def test_every_registered_loss_conforms(name):
    report = check_loss(name, seeds=2)
    assert report.ok
    assert {r.name for r in report.results} == set(CHECKS)


def test_example_plugin_conforms_and_matches_torchvision():
    from torchvision.ops import sigmoid_focal_loss

    report = check_loss("focal")
    assert [r.status for r in report.results if r.name == "gradcheck"] == ["passed"]
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(6, 4) > 0.7).double()
    for cfg in ({}, {"alpha": None, "gamma": 0.0}, {"reduction": "sum", "gamma": 1.3}):
        ours = losskit.build({"name": "focal", **cfg})(x, y)
        ref = sigmoid_focal_loss(x, y, alpha=cfg.get("alpha", 0.25) or -1, gamma=cfg.get("gamma", 2.0), reduction=cfg.get("reduction", "mean"))
        torch.testing.assert_close(ours, ref)
        g1, = torch.autograd.grad(ours, x)
        g2, = torch.autograd.grad(ref, x)
        torch.testing.assert_close(g1, g2)


# ------------------------------------------------- deliberately broken losses

class _Cfg(losskit.LossConfig):
    scale: float = Field(1.0, gt=0, description="multiplier")


def _inputs(size: Mapping[str, int], *, dtype, device, generator) -> losskit.Inputs:
    x = torch.randn(size["N"], generator=generator, dtype=dtype).to(device).requires_grad_(True)
    return losskit.Inputs((x,), {})


class _WrongGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x  # should be 2 * x


class WrongGradient(losskit.Loss[_Cfg]):
    """Gradient off by a factor of two."""

    config_class = _Cfg

    def compute(self, x):
        return losskit.LossOutput(loss=reduce(_WrongGrad.apply(x.float() if x.dtype != torch.float64 else x), self.config.reduction))


class HalfResult(losskit.Loss[_Cfg]):
    """Forgets to compute in fp32."""

    config_class = _Cfg

    def compute(self, x):
        return losskit.LossOutput(loss=reduce(x**2, self.config.reduction))


class BadNone(losskit.Loss[_Cfg]):
    """reduction='none' not consistent with 'sum'."""

    config_class = _Cfg

    def compute(self, x):
        v = x.float() ** 2 if x.dtype != torch.float64 else x**2
        return losskit.LossOutput(loss=v * 2 if self.config.reduction == "none" else reduce(v, self.config.reduction))


class Undescribed(losskit.Loss):
    """A config field without description."""

    class config_class(losskit.LossConfig):  # noqa: N801 - nested on purpose
        k: int = 1

    def compute(self, x):
        return losskit.LossOutput(loss=reduce(x.float() ** 2, self.config.reduction))


def _raising_inputs(size: Mapping[str, int], *, dtype, device, generator) -> losskit.Inputs:
    raise KeyError("N")


class _Broken:
    @losskit.hookimpl
    def register_losses(self, register):
        bench = BenchSpec(example_inputs=_inputs, sizes={"tiny": {"N": 5}})
        register("wrong_grad", WrongGradient, config=_Cfg, bench=bench)
        register("half_result", HalfResult, config=_Cfg, bench=bench)
        register("bad_none", BadNone, config=_Cfg, bench=bench)
        register("undescribed", Undescribed, config=Undescribed.config_class, bench=bench)
        register("no_inputs", HalfResult, config=_Cfg, bench=BenchSpec(sizes={"tiny": {"N": 5}}))
        register("raising_inputs", HalfResult, config=_Cfg, bench=BenchSpec(example_inputs=_raising_inputs))


@pytest.fixture(scope="module")
def broken():
    reg = Registry(autoload=False)
    reg.add_plugin(_Broken(), "broken")
    return reg


@pytest.mark.parametrize(
    ("name", "check", "message"),
    [
        ("wrong_grad", "gradcheck", "Jacobian mismatch"),
        ("half_result", "low_precision", "gave a torch.float16 result"),
        ("bad_none", "reduction", "sum of reduction='none'"),
        ("undescribed", "config", "fields without a description: k"),
    ],
)
def test_kit_reports_the_broken_check(broken, name, check, message):
    report = check_loss(broken.get_spec(name), raise_on_failure=False)
    failed = {r.name: r.message for r in report.failures}
    assert check in failed and message in failed[check]
    assert not report.ok
    with pytest.raises(AssertionError, match=f"FAIL {check}"):
        check_loss(broken.get_spec(name))


def test_kit_needs_inputs_and_known_checks(broken):
    with pytest.raises(losskit.errors.LosskitError, match="declares no example_inputs"):
        check_loss(broken.get_spec("no_inputs"))
    with pytest.raises(ValueError, match="checks: unknown check"):
        check_loss("focal", checks=["gradcheck", "speed"])
    report = check_loss(broken.get_spec("no_inputs"), example_inputs=_inputs, checks=["config"])
    assert [r.name for r in report.results] == ["config"]


def test_kit_reports_a_raising_input_factory_as_one_plugin_error(broken):
    with pytest.raises(losskit.errors.PluginError) as info:
        check_loss(broken.get_spec("raising_inputs"))
    assert str(info.value) == (
        "broken:raising_inputs: its example_inputs factory raised KeyError: 'N' (size {'B': 4, 'D': 3})"
    )
