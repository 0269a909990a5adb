"""Config files that are broken in every way a file can be: one ConfigError line naming the file."""

from __future__ import annotations

import re

import pytest

import losskit
from losskit.errors import ConfigError


def _write(tmp_path, name: str, data: str | bytes):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("loss.yaml", "name: focal\ngamma: 1.0\ngamma: 2.0\n", r"loss\.yaml:3:1: invalid YAML: duplicate key 'gamma' \(first given on line 2\)"),
        ("loss.yaml", "name: focal\nx: {a: 1, a: 2}\n", r"loss\.yaml:2:11: invalid YAML: duplicate key 'a' \(first given on line 2\)"),
        ("loss.json", '{"name": "focal", "gamma": 1.0, "gamma": 2.0}', r"loss\.json: invalid JSON: duplicate key 'gamma'"),
        ("loss.yaml", b"name: focal\n# caf\xe9\n", r"loss\.yaml:2: not UTF-8 text \(byte 0xe9 at offset 17\); save the file as UTF-8"),
        ("loss.json", "[" * 100_000 + "]" * 100_000, r"loss\.json: invalid JSON: nested too deeply to parse"),
        ("loss.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n", r"loss\.yaml: invalid YAML: nested too deeply to parse"),
        ("loss.json", '{"name": "focal", "gamma": ' + "9" * 5000 + "}", r"loss\.json: invalid JSON: an integer has more than 4300 digits"),
        ("loss.yaml", "name: focal\ngamma: " + "9" * 5000 + "\n", r"loss\.yaml: invalid YAML: an integer has more than 4300 digits"),
    ],
)
def test_bad_files_are_one_clear_config_error(tmp_path, name, data, message):
    path = _write(tmp_path, name, data)
    with pytest.raises(ConfigError, match="^" + re.escape(str(tmp_path) + "/") + message) as info:
        losskit.load_config(path)
    assert len(str(info.value).splitlines()) == 1


def test_merge_keys_are_not_duplicates(tmp_path):
    path = _write(tmp_path, "loss.yaml", "base: &b {gamma: 1.0}\nloss:\n  <<: *b\n  name: focal\n  alpha: 0.5\n")
    assert losskit.load_config(path, key="loss").gamma == 1.0


def test_field_errors_from_a_file_name_the_file(tmp_path):
    path = _write(tmp_path, "loss.yaml", "name: focal\ngamma: true\n")
    with pytest.raises(ConfigError) as info:
        losskit.load_config(path)
    assert str(info.value).splitlines() == [f"{path}: invalid loss config", "gamma: Input should be a valid number"]
    assert info.value.errors == [("gamma", "Input should be a valid number")]
