"""The loss registry: names to :class:`~losskit.spec.LossSpec`, and building losses from specs.

Plugins are loaded lazily, once, on the first call that needs them, under a lock (a
thread arriving meanwhile waits for the load to finish). A plugin that fails to
import, whose ``register_losses`` hook raises (any exception, ``SystemExit``
included; only ``KeyboardInterrupt`` goes through), is reported in one line
(:class:`~losskit.errors.PluginWarning`) and skipped, and what it had registered is
rolled back. Name rules:

- ``plugin:loss`` (the qualified name) always works.
- A short name registered by one plugin resolves to it.
- A short name used by a bundled plugin always means the bundled loss; a third-party
  loss of the same name is reachable only qualified, and a warning says so at load.
  When the bundled plugin is disabled, a warning says which loss the name now means.
- A short name claimed by several third-party plugins raises
  :class:`~losskit.errors.AmbiguousLossError` listing the qualified candidates.
- The same name twice in one plugin is a :class:`~losskit.errors.PluginError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pluggy

from losskit import hooks
from losskit.config import LossConfig, validate_config
from losskit.errors import AmbiguousLossError, ConfigError, PluginError, UnknownLossError
from losskit.current import (
    build,
    config_schema,
    config_to_dict,
    current_registry,
    default_registry,
    get_spec,
    list_losses,
    plugin_infos,
    resolve_config,
    temporary_plugin,
    using_registry,
)
from losskit.files import load_config, read_mapping
from losskit.loading import bundled_names, load_plugin, warn_shadowing_bundled, warn_shadowing_disabled
from losskit.loss import Loss
from losskit.names import resolve_name, suggest
from losskit.plugins import PluginInfo, disabled_plugins, discover, env_flag, is_disabled
from losskit.schema import registry_schema
from losskit.spec import LossSpec

__all__ = [
    "Registry",
    "build",
    "config_schema",
    "config_to_dict",
    "current_registry",
    "default_registry",
    "get_spec",
    "list_losses",
    "load_config",
    "plugin_infos",
    "read_mapping",
    "resolve_config",
    "temporary_plugin",
    "using_registry",
]


class Registry:
    """A set of plugins and the losses they registered.

    ``losskit.list_losses`` and friends use one process-wide instance,
    :func:`default_registry`; tests can build their own (``Registry(autoload=False)``
    plus :meth:`add_plugin`). Configs that hold other configs (e.g. a mixture's terms)
    resolve them in the registry that validates them (:func:`current_registry`).

    Args:
        autoload: load entry-point plugins on first use (``False`` starts empty).
    """

    def __init__(self, *, autoload: bool = True) -> None:
        self._autoload = autoload
        self._loaded = False
        self._loading = False  # only ever seen True by the loading thread (it holds the lock)
        self._lock = threading.RLock()
        self._specs: dict[str, LossSpec] = {}  # qualified name -> spec
        self._plugins: dict[str, PluginInfo] = {}
        self._pm = pluggy.PluginManager(hooks.PROJECT)
        self._pm.add_hookspecs(hooks.LosskitHookSpecs)

    # ------------------------------------------------------------------ loading
    def _ensure_loaded(self) -> None:
        if self._loaded or not self._autoload:
            return
        with self._lock:  # other threads wait here until the load is done
            # ``_loading``: a plugin querying the registry while it is being imported
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                self._load_entry_points()
                self._loaded = True
            finally:
                self._loading = False

    def _load_entry_points(self) -> None:
        blocked = disabled_plugins()
        bundled_only = env_flag("LOSSKIT_DISABLE_PLUGIN_AUTOLOAD")
        disabled_bundled = []
        for ep, info in discover():
            if info.name in self._plugins:
                continue
            if is_disabled(info, blocked):
                info.status, info.error = "disabled", "disabled by LOSSKIT_DISABLE_PLUGINS"
                if info.bundled:
                    disabled_bundled.append((ep, info))
            elif bundled_only and not info.bundled:
                info.status, info.error = "disabled", "disabled by LOSSKIT_DISABLE_PLUGIN_AUTOLOAD"
            if info.status == "disabled":
                self._plugins[info.name] = info
                continue
            self._add(info, ep.load)
        if disabled_bundled:
            warn_shadowing_disabled(self._specs.values(), bundled_names(disabled_bundled))

    def _add(self, info: PluginInfo, load: Callable[[], object]) -> PluginInfo:
        """Import a plugin, run its hook, commit its losses; report and skip on failure."""
        staged = load_plugin(self._pm, info, load)
        if staged is None:  # reported (or raised in strict mode) by load_plugin
            self._plugins[info.name] = info
            return info
        warn_shadowing_bundled(staged.values(), self._specs.values())
        self._specs.update(staged)
        info.status, info.error = "loaded", None
        info.losses = sorted(staged)
        self._plugins[info.name] = info
        return info

    # ------------------------------------------------------------ plugin API
    def add_plugin(self, plugin: object, name: str, *, bundled: bool = False) -> PluginInfo:
        """Register a plugin object (module, class or instance with a ``register_losses`` hookimpl).

        Used for plugins that are not installed as packages, e.g. in tests. Fails
        like an entry-point plugin would: reported and skipped, or raised in strict mode.
        """
        self._ensure_loaded()
        with self._lock:
            if name in self._plugins and self._plugins[name].status == "loaded":
                raise PluginError(f"a plugin named {name!r} is already loaded")
            return self._add(PluginInfo(name=name, bundled=bundled), lambda: plugin)

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin and all its losses."""
        with self._lock:
            info = self._plugins.pop(name, None)
            if info is None:
                raise PluginError(f"no plugin named {name!r}")
            for qualified in info.losses:
                self._specs.pop(qualified, None)
            module = self._pm.get_plugin(name)
            if module is not None:
                self._pm.unregister(module)

    @contextmanager
    def temporary_plugin(self, plugin: object, name: str) -> Iterator[PluginInfo]:
        """Context manager: the plugin is registered inside the block only."""
        info = self.add_plugin(plugin, name)
        try:
            yield info
        finally:
            if name in self._plugins:
                self.remove_plugin(name)

    def plugin_infos(self) -> list[PluginInfo]:
        """Every plugin seen, loaded or not, bundled first."""
        self._ensure_loaded()
        return sorted(self._plugins.values(), key=lambda p: (not p.bundled, p.name))

    # ----------------------------------------------------------------- lookup
    def specs(self) -> list[LossSpec]:
        """Every registered spec, by qualified name."""
        self._ensure_loaded()
        return [self._specs[k] for k in sorted(self._specs)]

    def list_losses(self) -> list[str]:
        """Sorted names a user can pass to :meth:`get_spec`.

        A short name when it resolves; the qualified name for losses that are only
        reachable qualified (shadowed by a bundled loss, or ambiguous).
        """
        return sorted(spec.name if self.short_name_resolves(spec) else spec.qualified_name for spec in self.specs())

    def short_name_resolves(self, spec: LossSpec) -> bool:
        """Whether ``spec.name`` alone means ``spec`` (not shadowed, not ambiguous)."""
        try:
            return self.get_spec(spec.name) is spec
        except AmbiguousLossError:
            return False

    def get_spec(self, name: str) -> LossSpec:
        """The spec of ``name`` (short or ``plugin:loss``).

        Raises:
            TypeError: ``name`` is not a str.
            UnknownLossError: no such loss (with close and case-insensitive suggestions).
            AmbiguousLossError: a short name of several third-party plugins.
        """
        if not isinstance(name, str):
            raise TypeError(f"name: expected a loss name (str), got {type(name).__name__}")
        self._ensure_loaded()
        spec = resolve_name(self._specs, name)
        if spec is None:
            raise UnknownLossError(name, suggest(self._specs.values(), name))
        return spec

    def spec_for_config(self, config: LossConfig) -> LossSpec:
        """The spec a config instance belongs to (by the name it was loaded with, else by class)."""
        if config._losskit_name:
            return self.get_spec(config._losskit_name)
        matches = [s for s in self.specs() if type(config) is s.config_class]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UnknownLossError(type(config).__name__, [])
        raise AmbiguousLossError(type(config).__name__, [s.qualified_name for s in matches])

    # --------------------------------------------------------------- configs
    def resolve(self, spec: Any, *, prefix: str = "", **overrides: Any) -> tuple[LossSpec, LossConfig]:
        """Look ``spec`` up once and validate it: ``(loss spec, config instance)``.

        ``spec`` is a name, a ``{"name": ..., **fields}`` mapping or a config instance;
        ``overrides`` replace fields. Errors are :class:`ConfigError` with paths under
        ``prefix``. Nested configs are validated with this registry in the pydantic
        validation context (``context={"registry": self}``).
        """
        with using_registry(self):
            loss_spec, data = self._spec_and_data(spec, prefix, overrides)
            config = validate_config(loss_spec.config_class, data, prefix=prefix, context={"registry": self})
        config._losskit_name = loss_spec.qualified_name
        return loss_spec, config

    def _spec_and_data(self, spec: Any, prefix: str, overrides: dict[str, Any]) -> tuple[LossSpec, dict[str, Any]]:
        name_path = f"{prefix}.name" if prefix else "name"
        if isinstance(spec, LossConfig):
            return self.spec_for_config(spec), {**spec.model_dump(), **overrides}
        if isinstance(spec, str):
            return self.get_spec(spec), dict(overrides)
        if not isinstance(spec, Mapping):
            raise TypeError(f"spec: expected a loss name, a dict with 'name' or a LossConfig, got {type(spec).__name__}")
        data = dict(spec)
        if "name" not in data:
            raise ConfigError([(name_path, "Field required (the registered loss name, see `losskit list`)")])
        name = data.pop("name")
        if not isinstance(name, str):
            raise ConfigError([(name_path, f"Input should be a loss name (str), got {type(name).__name__}")])
        return self.get_spec(name), {**data, **overrides}

    def resolve_config(self, spec: Any, *, prefix: str = "", **overrides: Any) -> LossConfig:
        """Validate a name, a ``{"name": ..., **fields}`` dict or a config instance (see :meth:`resolve`).

        Returns a config instance that remembers its loss name.
        """
        return self.resolve(spec, prefix=prefix, **overrides)[1]

    def build(self, spec: Any, **overrides: Any) -> Loss:
        """Build a loss module from a name, a dict with ``"name"`` or a config instance."""
        loss_spec, config = self.resolve(spec, **overrides)
        with using_registry(self):
            return loss_spec.loss_class(config)

    def config_schema(self, name: str | None = None) -> dict[str, Any]:
        """JSON Schema of one loss's config (with its ``name``), or of the union of all.

        A loss whose config has no JSON Schema is left out of the union and listed
        under ``"x-losskit-unavailable"`` (a :class:`~losskit.errors.PluginWarning` says
        so); asking for that loss alone raises :class:`~losskit.errors.SchemaError`.
        """
        specs = [self.get_spec(name)] if name is not None else self.specs()
        return registry_schema(specs, self.short_name_resolves, single=name is not None)
