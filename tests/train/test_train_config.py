"""TrainConfig: defaults, YAML + overrides, errors naming the field (loss fields included)."""

import pytest

from losskit.errors import ConfigError
from losskit.train.config import TrainConfig, apply_overrides, load_train_config


def test_defaults_are_valid_and_complete():
    c = TrainConfig()
    assert c.data.source == "generated" and c.optim.weight_decay == 0.01
    assert c.loss == {"name": "clip"}


def test_yaml_file_and_overrides(tmp_path, test_loss):
    path = tmp_path / "train.yaml"
    path.write_text(f"steps: 10\nloss:\n  name: {test_loss}\n  temperature: 0.1\noptim:\n  lr: 0.01\n")
    c = load_train_config(path, ["optim.lr=3e-4", "loss.temperature=0.05", "stages=[{steps: 2, freeze: [image]}]"])
    assert c.steps == 10 and c.optim.lr == 3e-4
    assert c.loss_config().temperature == 0.05
    assert c.stages[0].freeze == ["image"] and c.stages[0].steps == 2


def test_errors_name_every_bad_field(test_loss):
    with pytest.raises(ConfigError) as info:
        load_train_config(None, ["optim.lr=-1", "data.batch_size=x", "model.colour=1", f"loss.name={test_loss}"])
    text = str(info.value)
    assert "optim.lr:" in text and "data.batch_size:" in text and "model.colour:" in text


def test_loss_fields_are_validated_with_their_path(test_loss):
    with pytest.raises(ConfigError, match=r"loss\.temperature:"):
        load_train_config(None, [f"loss.name={test_loss}", "loss.temperature=-2"])
    with pytest.raises(ConfigError, match=r"loss\.nope:"):
        load_train_config(None, [f"loss.name={test_loss}", "loss.nope=1"])


def test_file_sources_need_annotations():
    with pytest.raises(ConfigError, match="train_annotations"):
        load_train_config(None, ["data.source=coco"])


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="dotted.field=value"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"steps": 3}, ["steps.x=1"])


@pytest.mark.parametrize("ks, message", [([0], "greater than or equal to 1"), ([-1], "greater than or equal to 1"),
                                         ([5, 1, 5], r"unique, \[5\] repeated"), ([], "at least 1 item")])  # fmt: skip
def test_eval_ks_must_be_positive_and_unique(ks, message):
    with pytest.raises(ConfigError, match=rf"eval\.ks(\.0)?: .*{message}"):
        load_train_config(None, [f"eval.ks={ks}"])


def test_default_evaluation_happens_four_times_during_the_run():
    config = load_train_config(None, [])
    assert config.eval.every is None and config.eval.interval(900) == 180 and config.eval.interval(6) == 2
    assert load_train_config(None, ["eval.every=0"]).eval.interval(900) == 0
