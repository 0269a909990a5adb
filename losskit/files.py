"""Config files: YAML (safe loader) or JSON to a mapping, and to a validated loss config.

Everything that can go wrong with a file is a :class:`~losskit.errors.ConfigError`
whose line names the file (and the line and column where the parser knows them):
unreadable or non-UTF-8 files, syntax errors, duplicate keys (YAML and JSON), nesting
too deep to parse, integers too long to convert, and a top level that is not a mapping.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from losskit.errors import ConfigError

if TYPE_CHECKING:
    from losskit.config import LossConfig

__all__ = ["StrictSafeLoader", "load_config", "read_mapping", "read_text"]


class StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping (YAML 1.2 requires unique keys)."""


def _construct_unique_mapping(loader: StrictSafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {seen[key]})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
    return loader.construct_mapping(node, deep=True)


StrictSafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_text(path: Path, what: str = "config file") -> str:
    """The UTF-8 text of ``path``; ``ConfigError`` naming the file (and the line of the first
    bad byte) when it cannot be read or is not UTF-8. ``what`` names the file's kind in the message."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read {what}: {exc.strerror or exc}")]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [(f"{path}:{line}", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
              "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")]
        ) from None  # fmt: skip


def _parse(path: Path, text: str) -> Any:
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        if kind == "JSON":
            return json.loads(text, object_pairs_hook=_unique_pairs)
        return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except json.JSONDecodeError as exc:
        raise ConfigError([(f"{path}:{exc.lineno}:{exc.colno}", f"invalid JSON: {exc.msg}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([(where, f"invalid YAML: {problem}")]) from None
    except RecursionError:
        raise ConfigError([(str(path), f"invalid {kind}: nested too deeply to parse")]) from None
    except ValueError as exc:  # a duplicate JSON key, or an integer too long to convert
        reason = str(exc).splitlines()[0]
        if "integer string conversion" in reason:
            reason = f"an integer has more than {sys.get_int_max_str_digits()} digits"
        raise ConfigError([(str(path), f"invalid {kind}: {reason}")]) from None


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML (safe loader, unique keys) or JSON (unique keys) file whose top level is a mapping.

    Raises:
        ConfigError: one line naming the file, e.g. ``loss.yaml:3:1: invalid YAML:
            duplicate key 'gamma' (first given on line 2)``.
    """
    path = Path(path)
    data = _parse(path, read_text(path))
    if not isinstance(data, dict):
        raise ConfigError([(str(path), f"expected a mapping at the top level, got {type(data).__name__}")])
    return data


def load_config(path: str | Path, *, key: str | None = None) -> LossConfig:
    """Load a YAML or JSON file into a validated loss config.

    Args:
        path: ``.yaml``/``.yml`` (parsed with a safe loader) or ``.json``.
        key: take the spec from this top-level key (e.g. ``"loss"`` in a trainer
            config) instead of the whole file.

    Raises:
        ConfigError: unreadable or malformed file (with line and column), missing
            ``name``, or fields that fail validation (one line per field, under a
            first line naming the file).
        UnknownLossError: the ``name`` is not registered.
    """
    from losskit.registry import resolve_config

    data = read_mapping(path)
    if key is not None:
        if key not in data:
            raise ConfigError([(key, f"Field required in {path}")])
        data = data[key]
        if not isinstance(data, dict):
            raise ConfigError([(key, f"expected a mapping, got {type(data).__name__} in {path}")])
    try:
        return resolve_config(data, prefix=key or "")
    except ConfigError as exc:
        raise ConfigError(exc.errors, title=f"{path}: invalid loss config") from None
