"""Fixtures of the mixture tests: a real plugin registering ``echo``, a loss whose value the test chooses."""

from __future__ import annotations

import pytest
import torch
from pydantic import Field
from torch import nn

import losskit
from losskit.loss import reduce


class EchoConfig(losskit.LossConfig):
    scale: float = Field(1.0, gt=0.0, le=100.0, description="Multiplies the input.")
    learn_scale: bool = Field(False, description="Hold the scale in a learnable parameter.")
    misbehave: bool = Field(False, description="Ignore the reduction (a loss that breaks the contract).")
    resettable: bool = Field(False, description="Declare a curriculum setter for the learnable scale.")


class EchoLoss(losskit.Loss[EchoConfig]):
    """reduce(scale * value): the loss is whatever the test feeds in."""

    config_class = EchoConfig

    def __init__(self, config: EchoConfig | None = None) -> None:
        super().__init__(config)
        if self.config.learn_scale:
            self.scale = nn.Parameter(torch.tensor(self.config.scale))

    def compute(self, value: torch.Tensor) -> losskit.LossOutput:
        scale = self.scale if self.config.learn_scale else self.config.scale
        loss = scale * value if self.config.misbehave else reduce(scale * value, self.config.reduction)
        return losskit.LossOutput(loss=loss, metrics={"scale": torch.as_tensor(scale)})

    def learnable_fields(self) -> dict[str, str]:
        return {"scale": "scale"} if self.config.learn_scale else {}

    def curriculum_setters(self):
        """With ``resettable``, a curriculum may drive the learnable scale: it resets the parameter."""
        if not (self.config.learn_scale and self.config.resettable):
            return {}

        def reset(value: float) -> None:
            self.config.scale = value
            with torch.no_grad():
                self.scale.fill_(value)

        return {"scale": reset}


class _Plugin:
    @losskit.hookimpl
    def register_losses(self, register):
        register("echo", EchoLoss, config=EchoConfig)


@pytest.fixture
def echo_plugin():
    """Registers ``echo`` (plugin ``mixture_test``) for one test."""
    with losskit.temporary_plugin(_Plugin(), "mixture_test"):
        yield


def echo_mixture(n_terms: int = 2, **config) -> losskit.Loss:
    """A mixture of ``n_terms`` echo terms named t0, t1, ..."""
    return losskit.build({"name": "mixture", "terms": {f"t{i}": {"name": "echo"} for i in range(n_terms)}, **config})


@pytest.fixture
def make_echo_mixture(echo_plugin):
    return echo_mixture
