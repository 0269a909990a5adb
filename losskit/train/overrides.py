"""Dotted command-line overrides of a train config: ``--set optim.lr=3e-4``, ``loss=siglip``.

Values are read as YAML (``--set stages='[{steps: 100, freeze: [image]}, {}]'``), so
they keep their YAML types: ``3e-4`` is a float, ``true`` a bool, ``[1, 5]`` a list.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from losskit.errors import ConfigError

__all__ = ["apply_overrides", "parse_assignment"]


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError([(path, f"{key!r} is not a section, cannot set a field inside it")])
        node = child
    node[keys[-1]] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"optim.lr=3e-4"`` -> ``("optim.lr", 0.0003)``; the value is read as YAML.

    Raises:
        ConfigError: no ``=``, an empty path, or a value that is not valid YAML (the
            line names the field and says to quote a plain string).
    """
    if "=" not in text:
        raise ConfigError([(text, "expected dotted.field=value, e.g. optim.lr=3e-4")])
    path, raw = text.split("=", 1)
    path = path.strip()
    if not path:
        raise ConfigError([(text, "empty field path before '='")])
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            [(path, f"cannot read the value {raw!r} as YAML ({problem}); quote it to pass a plain string")]
        ) from None
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``data`` with every ``dotted.path=value`` of ``overrides`` set.

    ``loss=NAME`` sets the loss's name and keeps its other fields (as ``loss.name=NAME``).
    """
    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_assignment(text)
        if path == "loss" and isinstance(value, str):
            path = "loss.name"
        _set_path(out, path, value)
    return out
