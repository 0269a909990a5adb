"""The loss registry: names to :class:`~losskit.spec.LossSpec`, and building losses from specs.

Plugins are loaded lazily, on the first call that needs them, one at a time: a
plugin that fails to import, or whose ``register_losses`` hook raises, is reported
in one line (:class:`~losskit.errors.PluginWarning`) and skipped, and what it had
registered is rolled back. Name rules:

- ``plugin:loss`` (the qualified name) always works.
- A short name registered by one plugin resolves to it.
- A short name used by a bundled plugin always means the bundled loss; a third-party
  loss of the same name is reachable only qualified, and a warning says so at load.
- A short name claimed by several third-party plugins raises
  :class:`~losskit.errors.AmbiguousLossError` listing the qualified candidates.
- The same name twice in one plugin is a :class:`~losskit.errors.PluginError`.
"""

from __future__ import annotations

import difflib
import json
import re
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Union

import pluggy
from pydantic import Field, TypeAdapter, create_model
from typing_extensions import Annotated, Literal

from losskit import hooks
from losskit.config import LossConfig, validate_config
from losskit.errors import AmbiguousLossError, ConfigError, PluginError, PluginWarning, UnknownLossError
from losskit.loss import Loss
from losskit.plugins import PluginInfo, discover, disabled_plugins, env_flag
from losskit.spec import DEFAULT_SIZES, InputFactory, LossSpec

__all__ = [
    "Registry",
    "build",
    "config_schema",
    "config_to_dict",
    "default_registry",
    "get_spec",
    "list_losses",
    "load_config",
    "plugin_infos",
    "resolve_config",
    "temporary_plugin",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _summary(loss_class: type) -> str:
    doc = (loss_class.__doc__ or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


class Registry:
    """A set of plugins and the losses they registered.

    ``losskit.list_losses`` and friends use one process-wide instance,
    :func:`default_registry`; tests can build their own.

    Args:
        autoload: load entry-point plugins on first use (``False`` starts empty).
    """

    def __init__(self, *, autoload: bool = True) -> None:
        self._autoload = autoload
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()
        self._specs: dict[str, LossSpec] = {}  # qualified name -> spec
        self._plugins: dict[str, PluginInfo] = {}
        self._pm = pluggy.PluginManager(hooks.PROJECT)
        self._pm.add_hookspecs(hooks.LosskitHookSpecs)

    # ------------------------------------------------------------------ loading
    def _ensure_loaded(self) -> None:
        # ``_loading`` makes a plugin that queries the registry while being imported safe.
        if self._loaded or self._loading or not self._autoload:
            return
        with self._lock:
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
        for ep, info in discover():
            if info.name in self._plugins:
                continue
            if info.name in blocked or (info.distribution or "") in blocked:
                info.status, info.error = "disabled", "disabled by LOSSKIT_DISABLE_PLUGINS"
            elif bundled_only and not info.bundled:
                info.status, info.error = "disabled", "disabled by LOSSKIT_DISABLE_PLUGIN_AUTOLOAD"
            if info.status == "disabled":
                self._plugins[info.name] = info
                continue
            self._add(info, ep.load)

    def _add(self, info: PluginInfo, load: Callable[[], object]) -> PluginInfo:
        """Import a plugin, run its hook, commit its losses; report and skip on failure."""
        staged: dict[str, LossSpec] = {}
        module: object | None = None
        try:
            module = load()
            self._pm.register(module, name=info.name)
            caller = self._pm.subset_hook_caller(
                "register_losses", remove_plugins=[p for p in self._pm.get_plugins() if p is not module]
            )
            caller(register=self._registrar(info, staged))
            if not self._pm.get_hookcallers(module):
                raise PluginError("it implements no losskit hook (expected a @losskit.hookimpl register_losses)")
        except Exception as exc:  # a broken plugin must not take the others down
            if module is not None and self._pm.is_registered(module):
                self._pm.unregister(module)
            info.status = "failed"
            info.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            message = f"losskit plugin {info.describe()} failed to load and was skipped: {info.error}"
            if env_flag("LOSSKIT_STRICT_PLUGINS"):  # not recorded: the next lookup raises again
                raise PluginError(message + "\n" + traceback.format_exc()) from exc
            self._plugins[info.name] = info
            warnings.warn(message + " (set LOSSKIT_STRICT_PLUGINS=1 for the traceback)", PluginWarning, stacklevel=4)
            return info
        for spec in staged.values():
            self._warn_if_shadowed(spec)
        self._specs.update(staged)
        info.status, info.error = "loaded", None
        info.losses = sorted(staged)
        self._plugins[info.name] = info
        return info

    def _warn_if_shadowed(self, spec: LossSpec) -> None:
        if spec.bundled:
            return
        for other in self._specs.values():
            if other.bundled and other.name == spec.name:
                warnings.warn(
                    f"plugin {spec.plugin!r} registers {spec.name!r}, a name of the bundled loss "
                    f"{other.qualified_name!r}; {spec.name!r} keeps meaning the bundled loss, use "
                    f"{spec.qualified_name!r} for the plugin's",
                    PluginWarning,
                    stacklevel=5,
                )

    def _registrar(self, info: PluginInfo, staged: dict[str, LossSpec]) -> Callable[..., None]:
        def register(
            name: str,
            loss_class: type,
            *,
            config: type[LossConfig],
            summary: str | None = None,
            example_inputs: InputFactory | None = None,
            sizes: Mapping[str, Mapping[str, int]] | None = None,
            baselines: Mapping[str, Callable[..., Any]] | None = None,
            throughput_keys: Sequence[str] | None = None,
            throughput_unit: str = "samples",
        ) -> None:
            """Register ``loss_class`` under ``name`` with its config model ``config``."""
            if not isinstance(name, str) or not _NAME.match(name):
                raise PluginError(
                    f"plugin {info.name!r}: loss name {name!r} must match {_NAME.pattern} "
                    "(lower case, digits, underscores)"
                )
            if not (isinstance(loss_class, type) and issubclass(loss_class, Loss)):
                raise PluginError(f"plugin {info.name!r}: {name!r} must be a subclass of losskit.Loss, got {loss_class!r}")
            if not (isinstance(config, type) and issubclass(config, LossConfig)):
                raise PluginError(f"plugin {info.name!r}: config of {name!r} must be a losskit.LossConfig subclass, got {config!r}")
            if not issubclass(config, loss_class.config_class):
                raise PluginError(
                    f"plugin {info.name!r}: config of {name!r} ({config.__name__}) is not a "
                    f"{loss_class.config_class.__name__}, the config_class of {loss_class.__name__}"
                )
            presets = dict(sizes) if sizes is not None else dict(DEFAULT_SIZES)
            if throughput_keys is not None:
                missing = {p: sorted(set(throughput_keys) - set(d)) for p, d in presets.items()}
                missing = {p: m for p, m in missing.items() if m}
                if not throughput_keys or isinstance(throughput_keys, str) or missing:
                    raise PluginError(
                        f"plugin {info.name!r}: throughput_keys of {name!r} must be a non-empty tuple of keys of "
                        f"every size preset, got {throughput_keys!r}" + (f" (missing in {missing})" if missing else "")
                    )
            qualified = f"{info.name}:{name}"
            if qualified in staged:
                raise PluginError(f"plugin {info.name!r} registers {name!r} twice")
            staged[qualified] = LossSpec(
                name=name,
                qualified_name=qualified,
                loss_class=loss_class,
                config_class=config,
                plugin=info.name,
                summary=summary if summary is not None else _summary(loss_class),
                bundled=info.bundled,
                example_inputs=example_inputs,
                sizes=presets,
                baselines=dict(baselines or {}),
                throughput_keys=tuple(throughput_keys) if throughput_keys is not None else None,
                throughput_unit=throughput_unit,
            )

        return register

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
        names = set()
        for spec in self.specs():
            names.add(spec.name if self._short_resolves_to(spec) else spec.qualified_name)
        return sorted(names)

    def _short_resolves_to(self, spec: LossSpec) -> bool:
        try:
            return self.get_spec(spec.name) is spec
        except AmbiguousLossError:
            return False

    def get_spec(self, name: str) -> LossSpec:
        """The spec of ``name`` (short or ``plugin:loss``)."""
        if not isinstance(name, str):
            raise TypeError(f"name: expected a loss name (str), got {type(name).__name__}")
        self._ensure_loaded()
        if ":" in name:
            spec = self._specs.get(name)
            if spec is None:
                raise UnknownLossError(name, self._suggest(name))
            return spec
        candidates = [s for s in self._specs.values() if s.name == name]
        bundled = [s for s in candidates if s.bundled]
        if len(bundled) == 1:
            return bundled[0]
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            raise AmbiguousLossError(name, [s.qualified_name for s in candidates])
        raise UnknownLossError(name, self._suggest(name))

    def _suggest(self, name: str) -> list[str]:
        pool = {s.name for s in self._specs.values()} | set(self._specs)
        return difflib.get_close_matches(name, sorted(pool), n=3, cutoff=0.6)

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
    def resolve_config(self, spec: Any, *, prefix: str = "", **overrides: Any) -> LossConfig:
        """Validate a name, a ``{"name": ..., **fields}`` dict or a config instance.

        Returns a config instance that remembers its loss name. Errors are
        :class:`ConfigError` with paths under ``prefix``.
        """
        if isinstance(spec, LossConfig):
            loss_spec = self.spec_for_config(spec)
            data = {**spec.model_dump(), **overrides}
        elif isinstance(spec, str):
            loss_spec = self.get_spec(spec)
            data = dict(overrides)
        elif isinstance(spec, Mapping):
            data = dict(spec)
            if "name" not in data:
                path = f"{prefix}.name" if prefix else "name"
                raise ConfigError([(path, "Field required (the registered loss name, see `losskit list`)")])
            name = data.pop("name")
            if not isinstance(name, str):
                path = f"{prefix}.name" if prefix else "name"
                raise ConfigError([(path, f"Input should be a loss name (str), got {type(name).__name__}")])
            loss_spec = self.get_spec(name)
            data.update(overrides)
        else:
            raise TypeError(
                f"spec: expected a loss name, a dict with 'name' or a LossConfig, got {type(spec).__name__}"
            )
        config = validate_config(loss_spec.config_class, data, prefix=prefix)
        config._losskit_name = loss_spec.qualified_name
        return config

    def build(self, spec: Any, **overrides: Any) -> Loss:
        """Build a loss module from a name, a dict with ``"name"`` or a config instance."""
        config = self.resolve_config(spec, **overrides)
        loss_spec = self.spec_for_config(config)
        return loss_spec.loss_class(config)

    def config_schema(self, name: str | None = None) -> dict[str, Any]:
        """JSON Schema of one loss's config (with its ``name``), or of the union of all."""
        if name is not None:
            spec = self.get_spec(name)
            return TypeAdapter(self._named_model(spec)).json_schema()
        models = [self._named_model(s) for s in self.specs()]
        if not models:
            return {"title": "LosskitLoss", "not": {}}
        union = Annotated[Union[tuple(models)], Field(discriminator="name")]  # type: ignore[valid-type]
        schema = TypeAdapter(union).json_schema()
        schema["title"] = "LosskitLoss"
        return schema

    def _named_model(self, spec: LossSpec) -> type:
        names = [spec.qualified_name]
        if self._short_resolves_to(spec):
            names.insert(0, spec.name)
        name_type = Literal[tuple(names)]  # type: ignore[valid-type]
        return create_model(
            spec.config_class.__name__,
            __base__=spec.config_class,
            name=(name_type, Field(description="Registered loss name (`losskit list`).")),
        )


def config_to_dict(config: LossConfig) -> dict[str, Any]:
    """``{"name": qualified_name, **fields}``: a JSON-ready spec that :func:`build` accepts."""
    spec = default_registry().spec_for_config(config)
    return {"name": spec.qualified_name, **config.model_dump(mode="json")}


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry used by the module-level functions."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Registry()
    return _DEFAULT


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
    return default_registry().resolve_config(spec, prefix=prefix, **overrides)


def config_schema(name: str | None = None) -> dict[str, Any]:
    """JSON Schema of one loss's config, or of all (discriminated by ``"name"``)."""
    return default_registry().config_schema(name)


def plugin_infos() -> list[PluginInfo]:
    """Every plugin seen by the default registry, with its status."""
    return default_registry().plugin_infos()


def temporary_plugin(plugin: object, name: str) -> Any:
    """Context manager registering ``plugin`` in the default registry for the block only."""
    return default_registry().temporary_plugin(plugin, name)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML (safe loader) or JSON file whose top level is a mapping."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read config file: {exc.strerror or exc}")]) from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([(f"{path}:{exc.lineno}:{exc.colno}", f"invalid JSON: {exc.msg}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([(where, f"invalid YAML: {problem}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([(str(path), f"expected a mapping at the top level, got {type(data).__name__}")])
    return data


def load_config(path: str | Path, *, key: str | None = None) -> LossConfig:
    """Load a YAML or JSON file into a validated loss config.

    Args:
        path: ``.yaml``/``.yml`` (parsed with ``yaml.safe_load``) or ``.json``.
        key: take the spec from this top-level key (e.g. ``"loss"`` in a trainer
            config) instead of the whole file.

    Raises:
        ConfigError: unreadable or malformed file (with line and column), missing
            ``name``, or fields that fail validation (one line per field).
        UnknownLossError: the ``name`` is not registered.
    """
    data = read_mapping(path)
    if key is not None:
        if key not in data:
            raise ConfigError([(key, f"Field required in {path}")])
        data = data[key]
        if not isinstance(data, dict):
            raise ConfigError([(key, f"expected a mapping, got {type(data).__name__}")])
    return resolve_config(data, prefix=key or "")
