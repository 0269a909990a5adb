"""repr(loss) shows what the loss computes with now: learned values, not the initial config."""

from __future__ import annotations

import torch
from pydantic import Field

import losskit
from losskit.loss import reduce


class _BiasConfig(losskit.LossConfig):
    bias: float = Field(0.5, description="added to every value; learnable")
    learnable: bool = Field(True, description="train the bias")


class _BiasLoss(losskit.Loss[_BiasConfig]):
    """Mean of x + bias, with a learnable bias."""

    config_class = _BiasConfig

    def __init__(self, config: _BiasConfig | None = None) -> None:
        super().__init__(config)
        self.bias = torch.nn.Parameter(torch.tensor(self.config.bias))

    def compute(self, x: torch.Tensor) -> losskit.LossOutput:
        return losskit.LossOutput(loss=reduce(x + self.bias, self.config.reduction))

    def learnable_fields(self) -> dict[str, str]:
        return {"bias": "bias"}


class _ScaleLoss(_BiasLoss):
    """Its parameter holds log(bias): learned_values converts back."""

    def __init__(self, config: _BiasConfig | None = None) -> None:
        losskit.Loss.__init__(self, config)
        self.log_bias = torch.nn.Parameter(torch.tensor(self.config.bias).log())

    def learnable_fields(self) -> dict[str, str]:
        return {"bias": "log_bias"}


def test_repr_shows_the_current_value_of_a_learnable_field():
    loss = _BiasLoss()
    assert "bias=0.5 (learned)" in repr(loss)
    with torch.no_grad():
        loss.bias.fill_(0.25)
    assert "bias=0.25 (learned)" in repr(loss) and "learnable=True" in repr(loss)
    assert loss.config.bias == 0.5  # the config keeps the initial value


class _ConvertingScaleLoss(_ScaleLoss):
    def learned_values(self) -> dict[str, float]:
        return {"bias": float(self.log_bias.detach().exp())}


def test_a_transformed_parameter_is_shown_only_through_learned_values():
    assert "bias=0.5," in repr(_ScaleLoss())  # the default does not guess the transform
    loss = _ConvertingScaleLoss()
    with torch.no_grad():
        loss.log_bias.fill_(0.0)
    assert "bias=1 (learned)" in repr(loss)


def test_bundled_clip_repr_shows_the_trained_temperature():
    loss = losskit.build("clip", temperature=0.07)
    with torch.no_grad():
        loss.log_logit_scale.fill_(torch.tensor(1 / 0.05).log())
    text = repr(loss)
    assert "temperature=0.05 (learned)" in text and "0.07" not in text
