"""JSON Schema of loss configs: one loss (with its ``name``) or the union of all."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, Union

from pydantic import Field, TypeAdapter, create_model
from typing_extensions import Annotated, Literal

from losskit.errors import PluginWarning, SchemaError
from losskit.spec import LossSpec

__all__ = ["named_model", "registry_schema"]


def named_model(spec: LossSpec, short_resolves: bool) -> type:
    """The spec's config model with a ``name`` field (short name when it resolves, and qualified)."""
    names = ([spec.name] if short_resolves else []) + [spec.qualified_name]
    return create_model(
        spec.config_class.__name__,
        __base__=spec.config_class,
        name=(Literal[tuple(names)], Field(description="Registered loss name (`losskit list`).")),  # type: ignore[valid-type]
    )


def _one(spec: LossSpec, short_resolves: bool) -> tuple[type, dict[str, Any]]:
    model = named_model(spec, short_resolves)
    try:
        return model, TypeAdapter(model).json_schema()
    except Exception as exc:  # noqa: BLE001 - e.g. a Callable field: pydantic has no schema for it
        reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        raise SchemaError(f"the config of {spec.qualified_name!r} has no JSON Schema ({reason})") from exc


def registry_schema(
    specs: Sequence[LossSpec], short_resolves: Callable[[LossSpec], bool], *, single: bool
) -> dict[str, Any]:
    """Schema of ``specs[0]`` alone (``single``) or of the union of ``specs``, discriminated by ``name``.

    In the union a spec without a schema is left out, listed under
    ``"x-losskit-unavailable"`` (qualified name -> reason) and reported as a
    :class:`PluginWarning`; alone it raises :class:`SchemaError`.
    """
    if single:
        return _one(specs[0], short_resolves(specs[0]))[1]
    models, unavailable = [], {}
    for spec in specs:
        try:
            models.append(_one(spec, short_resolves(spec))[0])
        except SchemaError as exc:
            unavailable[spec.qualified_name] = str(exc)
            warnings.warn(f"{exc}; left out of the schema of all losses", PluginWarning, stacklevel=4)
    if not models:
        schema: dict[str, Any] = {"title": "LosskitLoss", "not": {}}
    else:
        union = Annotated[Union[tuple(models)], Field(discriminator="name")]  # type: ignore[valid-type]
        schema = TypeAdapter(union).json_schema()
        schema["title"] = "LosskitLoss"
    if unavailable:
        schema["x-losskit-unavailable"] = unavailable
    return schema
