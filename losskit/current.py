"""The registry in use: the process-wide default, the one a block selects, and the
module-level shortcuts (``losskit.build``, ``losskit.list_losses``, ...) that use them.

:func:`current_registry` is what a config holding other configs (a mixture's terms)
or a loss building other losses asks for, so that a private ``Registry`` validates and
builds them with its own plugins.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from losskit.config import LossConfig
    from losskit.loss import Loss
    from losskit.plugins import PluginInfo
    from losskit.registry import Registry
    from losskit.spec import LossSpec

__all__ = [
    "build",
    "config_schema",
    "config_to_dict",
    "current_registry",
    "default_registry",
    "get_spec",
    "list_losses",
    "plugin_infos",
    "resolve_config",
    "temporary_plugin",
    "using_registry",
]


def _registry_class() -> type:
    from losskit.registry import Registry  # losskit.registry imports this module

    return Registry


_CURRENT: ContextVar[Registry | None] = ContextVar("losskit_current_registry", default=None)
_DEFAULT: Registry | None = None
_DEFAULT_LOCK = threading.Lock()


def default_registry() -> Registry:
    """The process-wide registry used by the module-level functions."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = _registry_class()()
        return _DEFAULT


@contextmanager
def using_registry(registry: Registry) -> Iterator[Registry]:
    """Make ``registry`` the :func:`current_registry` of this thread/task inside the block."""
    token = _CURRENT.set(registry)
    try:
        yield registry
    finally:
        _CURRENT.reset(token)


def current_registry(info: Any = None) -> Registry:
    """The registry in use: for validators and losses that resolve nested configs by name.

    Order: the ``"registry"`` of a pydantic validation context (pass the validator's
    ``ValidationInfo`` as ``info``), else the registry whose ``resolve``/``build`` is
    running (:func:`using_registry`), else :func:`default_registry`.
    """
    context = getattr(info, "context", None)
    if isinstance(context, Mapping) and isinstance(context.get("registry"), _registry_class()):
        return context["registry"]
    return _CURRENT.get() or default_registry()


def config_to_dict(config: LossConfig) -> dict[str, Any]:
    """``{"name": qualified_name, **fields}``: a JSON-ready spec that :func:`build` accepts."""
    spec = current_registry().spec_for_config(config)
    return {"name": spec.qualified_name, **config.model_dump(mode="json")}


def list_losses() -> list[str]:
    """Sorted names of every registered loss (see :meth:`Registry.list_losses`)."""
    return default_registry().list_losses()


def get_spec(name: str) -> LossSpec:
    """The :class:`LossSpec` of ``name`` (short or ``plugin:loss``)."""
    return default_registry().get_spec(name)


def build(spec: Any, **overrides: Any) -> Loss:
    """Build a loss: ``build("clip")``, ``build({"name": "clip", "temperature": 0.05})``,
    ``build(config_instance)``; keyword ``overrides`` replace config fields."""
    return default_registry().build(spec, **overrides)


def resolve_config(spec: Any, *, prefix: str = "", **overrides: Any) -> LossConfig:
    """Validate a spec into its config instance (see :meth:`Registry.resolve_config`)."""
    return current_registry().resolve_config(spec, prefix=prefix, **overrides)


def config_schema(name: str | None = None) -> dict[str, Any]:
    """JSON Schema of one loss's config, or of all (discriminated by ``"name"``)."""
    return default_registry().config_schema(name)


def plugin_infos() -> list[PluginInfo]:
    """Every plugin seen by the default registry, with its status."""
    return default_registry().plugin_infos()


def temporary_plugin(plugin: object, name: str) -> Any:
    """Context manager registering ``plugin`` in the default registry for the block only."""
    return default_registry().temporary_plugin(plugin, name)
