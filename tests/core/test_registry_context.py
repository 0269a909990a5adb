"""The registry is injectable: a private ``Registry(autoload=False)`` validates and builds a mixture
whose terms it alone knows, through the pydantic validation context."""

from __future__ import annotations

import pytest
import torch

import losskit
from losskit.errors import ConfigError
from losskit.registry import Registry, current_registry, default_registry, using_registry


class _Private:
    """Registers the example focal loss as ``private_focal`` and the bundled mixture."""

    @losskit.hookimpl
    def register_losses(self, register):
        from losskit_focal import FocalConfig, FocalLoss
        from losskit_plugins.mixture import MixtureConfig, MixtureLoss

        register("private_focal", FocalLoss, config=FocalConfig)
        register("mixture", MixtureLoss, config=MixtureConfig)


@pytest.fixture
def private() -> Registry:
    reg = Registry(autoload=False)
    reg.add_plugin(_Private(), "private")
    return reg


def test_a_private_registry_builds_a_mixture_of_its_own_losses(private):
    spec = {"name": "mixture", "terms": {"a": {"name": "private_focal", "gamma": 1.0}, "b": {"name": "private_focal"}}}
    loss = private.build(spec)
    assert {name: type(term).__name__ for name, term in loss.terms.items()} == {"a": "FocalLoss", "b": "FocalLoss"}
    assert loss.config.terms["a"]._losskit_name == "private:private_focal"
    logits, targets = torch.randn(3, 2), (torch.rand(3, 2) > 0.5).float()
    out = loss.compute(a={"logits": logits, "targets": targets}, b={"logits": logits, "targets": targets})
    assert torch.isfinite(out.loss)
    assert loss.config.model_dump()["terms"]["a"]["name"] == "private:private_focal"
    with pytest.raises(losskit.errors.UnknownLossError):
        default_registry().get_spec("private_focal")  # the default registry never saw it


def test_the_validation_context_names_the_registry(private):
    from losskit_plugins.mixture import MixtureConfig

    data = {"terms": {"a": {"name": "private_focal"}}}
    config = MixtureConfig.model_validate(data, context={"registry": private})
    assert config.terms["a"]._losskit_name == "private:private_focal"
    with pytest.raises(ConfigError, match=r"terms\.a\.name: unknown loss 'private_focal'"):
        losskit.registry.resolve_config({"name": "mixture", **data})  # the default registry does not know it


def test_current_registry_order(private):
    assert current_registry() is default_registry()
    with using_registry(private):
        assert current_registry() is private
        other = Registry(autoload=False)
        assert current_registry(type("Info", (), {"context": {"registry": other}})()) is other
    assert current_registry() is default_registry()
