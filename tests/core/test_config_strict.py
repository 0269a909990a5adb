"""Strict config types, "did you mean" for field and loss names, and resolving a spec once."""

from __future__ import annotations

import pytest

import losskit
from losskit.errors import ConfigError, UnknownLossError


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"label_smoothing": True}, "label_smoothing: Input should be a valid number"),
        ({"chunk_size": True}, "chunk_size: Input should be a valid integer"),
        ({"normalize": 0}, "normalize: Input should be a valid boolean"),
        ({"normalize": "yes"}, "normalize: Input should be a valid boolean"),
        ({"temperature": "0.1"}, "temperature: Input should be a valid number"),
    ],
)
def test_lax_coercions_are_rejected(fields, line):
    with pytest.raises(ConfigError) as info:
        losskit.build({"name": "clip", **fields})
    assert str(info.value).splitlines() == [line]
    with pytest.raises(ConfigError, match=line):
        losskit.build("clip", **fields)


def test_ints_are_still_floats_and_yaml_lists_still_tuples(tmp_path):
    assert losskit.build("clip", temperature=1).config.temperature == 1.0
    assert losskit.build("focal", gamma=2).config.gamma == 2.0
    path = tmp_path / "mix.yaml"
    path.write_text("name: mixture\nweighting: uncertainty\nuncertainty:\n  clamp: [-5, 5]\n")
    assert losskit.load_config(path).uncertainty.clamp == (-5.0, 5.0)


def test_assignment_is_strict_too():
    loss = losskit.build("focal")
    with pytest.raises(ConfigError, match="^gamma: Input should be a valid number"):
        loss.config.gamma = "1.5"
    with pytest.raises(ConfigError, match=r"^gama: FocalConfig has no such field; did you mean 'gamma'\?$"):
        loss.config.gama = 1.0


def test_field_typos_get_did_you_mean_everywhere(tmp_path):
    with pytest.raises(ConfigError, match=r"^temprature: Extra inputs are not permitted; did you mean 'temperature'\?$"):
        losskit.build("clip", temprature=0.1)
    with pytest.raises(ConfigError, match=r"^Gamma: Extra inputs are not permitted; did you mean 'gamma'\?$"):
        losskit.build({"name": "focal", "Gamma": 1.0})
    path = tmp_path / "loss.yaml"
    path.write_text("name: clip\nlabel_smothing: 0.1\n")
    with pytest.raises(ConfigError, match=r"label_smothing: Extra inputs are not permitted; did you mean 'label_smoothing'\?"):
        losskit.load_config(path)
    with pytest.raises(ConfigError, match=r"^colour: Extra inputs are not permitted$"):  # nothing close: no guess
        losskit.build("focal", colour="red")


def test_loss_names_get_case_insensitive_suggestions():
    with pytest.raises(UnknownLossError, match=r"unknown loss 'sigLIP'; did you mean 'siglip'( or|\?)"):
        losskit.build("sigLIP")
    with pytest.raises(UnknownLossError, match=r"unknown loss 'CLIP'; did you mean 'clip'"):
        losskit.get_spec("CLIP")


def test_resolve_returns_the_spec_and_the_config_in_one_lookup():
    reg = losskit.registry.default_registry()
    spec, config = reg.resolve({"name": "focal", "gamma": 1.0}, alpha=None)
    assert spec is reg.get_spec("focal") and config.gamma == 1.0 and config.alpha is None
    assert config._losskit_name == "focal:focal"
