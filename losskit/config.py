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

__all__ = ["LossConfig", "Reduction", "validate_config"]

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
            raise ConfigError.from_pydantic(exc) from None


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
        raise ConfigError.from_pydantic(exc, prefix=prefix) from None
