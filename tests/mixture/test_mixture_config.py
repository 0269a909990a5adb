"""Mixture config: recursive validation with full paths, round trips, schema."""

from __future__ import annotations

import json

import pytest

import losskit
from losskit.errors import ConfigError


def mixture_spec(**extra):
    return {
        "name": "mixture",
        "terms": {"cls": {"name": "focal", "gamma": 1.0}, "box": {"name": "bbox", "iou_loss": "ciou"}},
        **extra,
    }


def errors_of(spec) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        losskit.build(spec)
    return info.value.errors


def test_a_bad_field_deep_inside_reports_its_full_path():
    spec = mixture_spec()
    spec["terms"]["box"]["iou_weight"] = -1.0
    spec["terms"]["cls"]["gamma"] = "high"
    paths = [p for p, _ in errors_of(spec)]
    assert paths == ["terms.cls.gamma", "terms.box.iou_weight"]



def test_the_message_gives_each_full_path_including_a_third_party_term():
    assert not losskit.get_spec("focal").bundled  # focal comes from the installed example plugin
    spec = mixture_spec()
    spec["terms"]["box"]["iou_weight"] = -1.0
    spec["terms"]["cls"]["gamma"] = 11.0
    with pytest.raises(ConfigError) as info:
        losskit.build(spec)
    assert str(info.value).splitlines() == [
        "terms.cls.gamma: Input should be less than or equal to 10",
        "terms.box.iou_weight: Input should be greater than or equal to 0",
    ]

def test_term_model_validators_report_under_the_term():
    spec = mixture_spec()
    spec["terms"]["box"].update(l1_weight=0.0, iou_loss="none")
    [(path, message)] = errors_of(spec)
    assert path == "terms.box" and "every term is off" in message


def test_unknown_or_missing_loss_name_of_a_term():
    errors = dict(errors_of({"name": "mixture", "terms": {"a": {"name": "focl"}, "b": {"gamma": 1.0}}}))
    assert "did you mean 'focal'" in errors["terms.a.name"]
    assert "Field required" in errors["terms.b.name"]


def test_term_names_and_reductions_are_checked():
    errors = dict(errors_of({"name": "mixture", "terms": {"weight": {"name": "focal"}, "2x": {"name": "focal"}}}))
    assert set(errors) == {"terms.weight", "terms.2x"}
    [(path, message)] = errors_of({"name": "mixture", "terms": {"a": {"name": "focal", "reduction": "none"}}})
    assert path == "terms.a.reduction" and "scalar" in message


def test_per_term_mappings_only_name_terms_and_fill_defaults():
    [(path, message)] = errors_of(mixture_spec(weights={"bx": 2.0}))
    assert path == "weights.bx" and "['box', 'cls']" in message
    [(path, _)] = errors_of(mixture_spec(term_options={"box": {"task": "ranking"}}))
    assert path == "term_options.box.task"
    config = losskit.build(mixture_spec(weights={"box": 2.0})).config
    assert config.weights == {"cls": 1.0, "box": 2.0}
    assert set(config.term_options) == {"cls", "box"}


def test_mixture_fields_are_bounded():
    assert errors_of(mixture_spec(weights={"box": -1.0}))[0][0] == "weights.box"
    assert errors_of(mixture_spec(weighting="pcgrad"))[0][0] == "weighting"
    assert errors_of(mixture_spec(dwa={"window": 0}))[0][0] == "dwa.window"
    assert errors_of(mixture_spec(uncertainty={"clamp": [3.0, -3.0]}))[0][0] == "uncertainty.clamp"
    assert errors_of(mixture_spec(weighting="gradnorm", weights={"box": 0.0, "cls": 0.0}))[0][0] == "weights"
    assert errors_of(mixture_spec(reduction="mean"))[0][0] == "reduction"
    assert errors_of({"name": "mixture", "terms": {}})[0][0] == "terms"


def test_load_config_reports_paths_under_the_key(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(
        "loss:\n  name: mixture\n  terms:\n    box: {name: bbox, iou_weight: -2}\n    cls: {name: focal}\n"
    )
    with pytest.raises(ConfigError) as info:
        losskit.load_config(path, key="loss")
    assert [p for p, _ in info.value.errors] == ["loss.terms.box.iou_weight"]


def test_assignment_inside_a_term_is_validated_with_its_path():
    mixture = losskit.build(mixture_spec())
    with pytest.raises(ConfigError) as info:
        mixture.config.terms["box"].iou_weight = -1.0
    assert info.value.errors[0][0] == "iou_weight"
    with pytest.raises(ConfigError) as info:
        mixture.config.weights = {"box": -1.0}
    assert info.value.errors[0][0] == "weights.box"


def test_nested_mixture_paths():
    spec = {"name": "mixture", "terms": {"inner": mixture_spec(), "cls": {"name": "focal"}}}
    spec["terms"]["inner"]["terms"]["box"]["l1_weight"] = -1.0
    assert [p for p, _ in errors_of(spec)] == ["terms.inner.terms.box.l1_weight"]


def test_json_round_trip_rebuilds_the_same_config():
    mixture = losskit.build(mixture_spec(weights={"box": 0.5}, weighting="dwa", dwa={"window": 7}))
    dumped = losskit.config_to_dict(mixture.config)
    assert dumped["terms"]["box"]["name"] == "boxes:bbox"
    again = losskit.build(json.loads(json.dumps(dumped)))
    assert again.config == mixture.config
    assert again.config.terms["box"].iou_loss == "ciou"


def test_schema_describes_terms():
    schema = losskit.config_schema("mixture")
    terms = schema["properties"]["terms"]["additionalProperties"]
    assert terms["required"] == ["name"]
    assert all(field.get("description") for field in schema["properties"].values())


def test_config_error_expands_nested_config_errors_of_any_config():
    """The general mechanism (losskit.config.config_error) the mixture relies on."""
    from pydantic import field_validator

    from losskit.config import validate_config

    class Holder(losskit.LossConfig):
        inner: dict = {}

        @field_validator("inner")
        @classmethod
        def _check(cls, inner):
            bad = [(f"{k}.size", "must be positive") for k, v in inner.items() if v <= 0]
            if bad:
                raise ConfigError(bad)
            return inner

    with pytest.raises(ConfigError) as info:
        validate_config(Holder, {"inner": {"a": 1, "b": 0, "c": -1}, "reduction": "max"}, prefix="loss")
    assert info.value.errors == [
        ("loss.reduction", "Input should be 'mean', 'sum' or 'none'"),
        ("loss.inner.b.size", "must be positive"),
        ("loss.inner.c.size", "must be positive"),
    ]
    holder = Holder()
    with pytest.raises(ConfigError) as info:
        holder.inner = {"z": 0}  # validated assignment goes through the same expansion
    assert info.value.errors == [("inner.z.size", "must be positive")]
