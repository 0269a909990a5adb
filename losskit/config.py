"""Base class of every loss configuration.

A loss is built from exactly one pydantic v2 model deriving from :class:`LossConfig`.
The base forbids unknown fields, validates on assignment (so a curriculum or a user
setting ``loss.config.temperature = -1`` gets a :class:`~losskit.errors.ConfigError`
instead of a silent NaN later) and carries the one field every loss shares,
``reduction``.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from losskit.errors import ConfigError

__all__ = ["LossConfig", "Reduction", "config_error", "join_path", "validate_config"]

Reduction = Literal["mean", "sum", "none"]


class LossConfig(BaseModel):
    """Validated configuration of one loss.

    Subclasses declare every field with a type, bounds where they make sense and a
    ``description`` (shown by ``losskit show`` and in the JSON Schema).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    reduction: Reduction = Field(
        "mean",
        description="'mean' and 'sum' give a scalar; 'none' gives one value per sample.",
    )

    # qualified name of the loss this config was validated for (set by the registry)
    _losskit_name: str | None = PrivateAttr(default=None)

    def __setattr__(self, name: str, value: Any) -> None:
        # validate_assignment raises pydantic's error; users get losskit's instead.
        try:
            super().__setattr__(name, value)
        except pydantic.ValidationError as exc:
            raise config_error(exc) from None


def join_path(*parts: str) -> str:
    """Dotted path of the non-empty ``parts``: ``join_path("terms", "", "box") == "terms.box"``."""
    return ".".join(p for p in parts if p)


def config_error(exc: pydantic.ValidationError, *, prefix: str = "") -> ConfigError:
    """Turn a ``pydantic.ValidationError`` into a :class:`ConfigError` with full dotted paths.

    A config that holds other configs (e.g. a mixture's ``terms``) validates them in a
    validator that raises a :class:`ConfigError` with paths relative to the field;
    pydantic wraps it into one ``value_error``. Such errors are expanded back into one
    line per nested field, under the field's own path: a ``ConfigError([("box.iou_weight",
    msg)])`` raised while validating ``terms`` becomes ``terms.box.iou_weight: msg``.

    Args:
        exc: the pydantic error.
        prefix: dotted path of the validated config inside a larger one.
    """
    errors: list[tuple[str, str]] = []
    for err in exc.errors():
        path = join_path(prefix, ".".join(str(part) for part in err["loc"]))
        nested = (err.get("ctx") or {}).get("error")
        if isinstance(nested, ConfigError):
            errors.extend((join_path(path, sub), msg) for sub, msg in nested.errors)
        else:
            errors.append((path, err["msg"]))
    return ConfigError(errors)


def validate_config(config_class: type[LossConfig], data: dict[str, Any], *, prefix: str = "") -> LossConfig:
    """Validate ``data`` with ``config_class``; raise :class:`ConfigError` with full paths.

    Args:
        config_class: the loss's config model.
        data: field values (without ``"name"``).
        prefix: dotted path of this config inside a larger one (e.g. ``"terms.box"``),
            prepended to every error line.
    """
    try:
        return config_class.model_validate(data)
    except pydantic.ValidationError as exc:
        raise config_error(exc, prefix=prefix) from None
