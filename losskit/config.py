"""Base class of every loss configuration.

A loss is built from exactly one pydantic v2 model deriving from :class:`LossConfig`.
The base forbids unknown fields (with a "did you mean" for close names), validates on
assignment (so a curriculum or a user setting ``loss.config.temperature = -1`` gets a
:class:`~losskit.errors.ConfigError` instead of a silent NaN later), uses strict types
(``"0.1"`` is not a float, ``true`` is not a number, ``0`` is not a bool; an int is a
float) and carries the one field every loss shares, ``reduction``.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from losskit.errors import ConfigError

__all__ = ["LossConfig", "Reduction", "config_error", "did_you_mean", "join_path", "validate_config"]

Reduction = Literal["mean", "sum", "none"]


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` (case-insensitive), else ``""``."""
    lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
    return f"; did you mean {lower[close[0]]!r}?" if close else ""


def _is_tuple(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple(arg) for arg in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _is_tuple(typing.get_args(annotation)[0])
    return annotation is tuple or origin is tuple


class LossConfig(BaseModel):
    """Validated configuration of one loss.

    Subclasses declare every field with a type, bounds where they make sense and a
    ``description`` (shown by ``losskit show`` and in the JSON Schema). Types are
    strict, as the JSON Schema says: a YAML/JSON list is accepted for a tuple field.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, strict=True)

    reduction: Reduction = Field(
        "mean",
        description="'mean' and 'sum' give a scalar; 'none' gives one value per sample.",
    )

    # qualified name of the loss this config was validated for (set by the registry)
    _losskit_name: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _lists_for_tuples(cls, data: Any) -> Any:
        # strict mode takes JSON arrays for tuples only in JSON mode; YAML and dicts give lists
        if not isinstance(data, Mapping):
            return data
        fixed = {k: tuple(data[k]) for k, f in cls.model_fields.items() if isinstance(data.get(k), list) and _is_tuple(f.annotation)}
        return {**data, **fixed} if fixed else data

    def __setattr__(self, name: str, value: Any) -> None:
        # validate_assignment raises pydantic's error; users get losskit's instead.
        if not name.startswith("_") and name not in type(self).model_fields:
            hint = did_you_mean(name, list(type(self).model_fields))
            raise ConfigError([(name, f"{type(self).__name__} has no such field{hint}")])
        try:
            super().__setattr__(name, value)
        except pydantic.ValidationError as exc:
            raise config_error(exc, model=type(self)) from None


def join_path(*parts: str) -> str:
    """Dotted path of the non-empty ``parts``: ``join_path("terms", "", "box") == "terms.box"``."""
    return ".".join(p for p in parts if p)


def _hint(model: type[BaseModel] | None, loc: Sequence[Any]) -> str:
    """A "did you mean" for an unknown field at ``loc`` of ``model`` (nested models walked)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if model is not None else None
        annotation = field.annotation if field is not None else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    if model is None or not loc:
        return ""
    return did_you_mean(str(loc[-1]), [n for n in model.model_fields if n != str(loc[-1])])


def config_error(exc: pydantic.ValidationError, *, prefix: str = "", model: type[BaseModel] | None = None) -> ConfigError:
    """Turn a ``pydantic.ValidationError`` into a :class:`ConfigError` with full dotted paths.

    A config that holds other configs (e.g. a mixture's ``terms``) validates them in a
    validator that raises a :class:`ConfigError` with paths relative to the field;
    pydantic wraps it into one ``value_error``. Such errors are expanded back into one
    line per nested field, under the field's own path: a ``ConfigError([("box.iou_weight",
    msg)])`` raised while validating ``terms`` becomes ``terms.box.iou_weight: msg``.

    Args:
        exc: the pydantic error.
        prefix: dotted path of the validated config inside a larger one.
        model: the validated model; unknown fields then get a "did you mean" of its
            closest field name.
    """
    errors: list[tuple[str, str]] = []
    for err in exc.errors():
        path = join_path(prefix, ".".join(str(part) for part in err["loc"]))
        nested = (err.get("ctx") or {}).get("error")
        if isinstance(nested, ConfigError):
            errors.extend((join_path(path, sub), msg) for sub, msg in nested.errors)
        elif err["type"] == "extra_forbidden":
            errors.append((path, err["msg"] + _hint(model, err["loc"])))
        else:
            errors.append((path, err["msg"]))
    return ConfigError(errors)


def validate_config(
    config_class: type[LossConfig],
    data: dict[str, Any],
    *,
    prefix: str = "",
    context: dict[str, Any] | None = None,
) -> LossConfig:
    """Validate ``data`` with ``config_class``; raise :class:`ConfigError` with full paths.

    Args:
        config_class: the loss's config model.
        data: field values (without ``"name"``).
        prefix: dotted path of this config inside a larger one (e.g. ``"terms.box"``),
            prepended to every error line.
        context: pydantic validation context (e.g. ``{"registry": reg}``, read by
            :func:`losskit.registry.current_registry` in validators of nested configs).
    """
    try:
        return config_class.model_validate(data, context=context)
    except pydantic.ValidationError as exc:
        raise config_error(exc, prefix=prefix, model=config_class) from None
