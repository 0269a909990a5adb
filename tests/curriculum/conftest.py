"""A real plugin registered for the curriculum tests: a loss with a learnable temperature and an int field."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import Field
from torch import nn

import losskit
from losskit.loss import reduce


class ScaledConfig(losskit.LossConfig):
    temperature: float = Field(0.5, gt=0.0, le=10.0, description="Divides the input.")
    learn_temperature: bool = Field(False, description="Hold the temperature in a learnable parameter.")
    power: int = Field(2, ge=1, le=4, description="Exponent of the per-element loss.")
    resettable: bool = Field(False, description="Declare a curriculum setter for the learnable temperature.")


class ScaledLoss(losskit.Loss[ScaledConfig]):
    """mean(|x / temperature| ** power)."""

    config_class = ScaledConfig

    def __init__(self, config: ScaledConfig | None = None) -> None:
        super().__init__(config)
        if self.config.learn_temperature:
            self.log_temperature = nn.Parameter(torch.tensor(math.log(self.config.temperature)))

    def temperature(self) -> torch.Tensor:
        if self.config.learn_temperature:
            return self.log_temperature.exp()
        return torch.tensor(self.config.temperature)

    def compute(self, x: torch.Tensor) -> losskit.LossOutput:
        values = (x / self.temperature()).abs() ** self.config.power
        return losskit.LossOutput(loss=reduce(values, self.config.reduction), metrics={"temperature": self.temperature()})

    def learnable_fields(self) -> dict[str, str]:
        return {"temperature": "log_temperature"} if self.config.learn_temperature else {}

    def curriculum_setters(self):
        if not (self.config.learn_temperature and self.config.resettable):
            return {}

        def reset(value: float) -> None:
            self.config.temperature = value
            with torch.no_grad():
                self.log_temperature.fill_(math.log(value))

        return {"temperature": reset}


class _Plugin:
    @losskit.hookimpl
    def register_losses(self, register):
        register("scaled", ScaledLoss, config=ScaledConfig)


@pytest.fixture
def scaled_plugin():
    """Registers ``scaled`` (plugin ``curriculum_test``) for one test."""
    with losskit.temporary_plugin(_Plugin(), "curriculum_test"):
        yield
