"""``losskit train`` on the command line: loss overrides, loss=NAME, files named in errors, option order, clear one-line errors."""

import os
import subprocess
import sys

import pytest
import yaml
from subprocess_output import own_lines

from losskit.cli import main
from losskit.errors import ConfigError
from losskit.train.config import load_train_config


def test_loss_field_override_merges_into_the_default_loss():
    config = load_train_config(None, ["loss.temperature=0.1"])
    assert config.loss == {"name": "clip", "temperature": 0.1}
    assert config.loss_config().temperature == 0.1


def test_bare_loss_name_chooses_the_loss_and_keeps_other_fields(tmp_path):
    assert load_train_config(None, ["loss=siglip"]).loss == {"name": "siglip"}
    config = load_train_config(None, ["loss.temperature=0.2", "loss=siglip"])
    assert config.loss == {"name": "siglip", "temperature": 0.2} and type(config.loss_config()).__name__ == "SiglipConfig"
    (tmp_path / "t.yaml").write_text("loss: infonce\nsteps: 3\n")
    assert load_train_config(tmp_path / "t.yaml").loss == {"name": "infonce"}


def test_loss_field_typo_names_the_field_with_a_suggestion():
    with pytest.raises(ConfigError) as info:
        load_train_config(None, ["loss.temprature=0.1"])
    assert [path for path, _ in info.value.errors] == ["loss.temprature"]
    assert "did you mean 'temperature'" in str(info.value)


def test_a_loss_only_file_asks_for_a_loss_section(tmp_path):
    (tmp_path / "loss.yaml").write_text("name: clip\ntemperature: 0.1\n")
    with pytest.raises(ConfigError, match=r"loss\.yaml: .*a train config needs a `loss:` section"):
        load_train_config(tmp_path / "loss.yaml")


def test_errors_from_a_file_name_the_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("steps: -1\nloss:\n  name: clip\n  temperature: -2\n")
    with pytest.raises(ConfigError) as info:
        load_train_config(tmp_path / "bad.yaml", ["optim.lr=0.1"])
    lines = str(info.value).splitlines()
    assert lines[0] == f"invalid train config {tmp_path / 'bad.yaml'} with the command-line overrides:"
    assert lines[1].startswith("steps:")


def test_cli_overrides_in_any_order(tmp_path, capsys):
    # bare field=value after an option, and loss=NAME, all reach the config (validated before training)
    code = main(["train", "steps=1", "--run-dir", str(tmp_path / "r"), "data.nope=1"])
    err = capsys.readouterr().err
    assert code == 1 and err == "losskit train: error: data.nope: Extra inputs are not permitted\n"
    code = main(["train", "steps=1", "--run-dir", str(tmp_path / "r"), "loss=siglip", "loss.logit_bias=1e5"])
    err = capsys.readouterr().err
    assert code == 1 and "loss.logit_bias:" in err  # a siglip field: loss=siglip was applied
    assert not (tmp_path / "r").exists()


def test_help_shows_how_to_choose_the_loss(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "loss=siglip" in out and "--overwrite" in out


@pytest.mark.parametrize(
    "value, expected",
    [("stages=[{steps: 2", "stages: cannot read the value '[{steps: 2' as YAML"), ("steps=!!int x", "steps: cannot read the value")],
)
def test_malformed_yaml_values_are_one_clear_line(capsys, value, expected):
    assert main(["train", "--set", value]) == 1
    err = capsys.readouterr().err
    assert err.startswith("losskit train: error: " + expected) and len(err.strip().splitlines()) == 1


def test_cuda_on_a_machine_without_cuda_is_one_clear_line(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "losskit", "train", "device=cuda", "steps=1",
                           f"run_dir={tmp_path / 'r'}"], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = own_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("losskit train: error: device: 'cuda' was requested but no CUDA device")


def test_run_directory_is_printed_at_the_start(tmp_path, tiny, test_loss, capsys):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny(tmp_path / "run", steps=2)))
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run directory: {tmp_path / 'run'}" and lines[-1] == lines[0]
