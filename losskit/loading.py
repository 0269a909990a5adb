"""Loading one plugin in isolation, and the warnings about names it takes from others.

A plugin's import and its ``register_losses`` hook run with their ``print`` output
sent to stderr. Whatever they raise (``SystemExit`` included; only
``KeyboardInterrupt`` goes through) is reported in one line naming the plugin, its
distribution and version, and the plugin is skipped with nothing half-registered;
``LOSSKIT_STRICT_PLUGINS=1`` raises a :class:`~losskit.errors.PluginError` instead.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable, Iterable
from importlib import metadata

import pluggy

from losskit.errors import PluginError, PluginWarning
from losskit.plugins import PluginInfo, env_flag, plugin_output_to_stderr
from losskit.registrar import make_registrar
from losskit.spec import LossSpec

__all__ = ["bundled_names", "load_plugin", "warn_shadowing_bundled", "warn_shadowing_disabled"]


def _run_hook(pm: pluggy.PluginManager, info: PluginInfo, module: object, staged: dict[str, LossSpec]) -> None:
    pm.register(module, name=info.name)
    others = [p for p in pm.get_plugins() if p is not module]
    pm.subset_hook_caller("register_losses", remove_plugins=others)(register=make_registrar(info, staged))
    if not pm.get_hookcallers(module):
        raise PluginError("it implements no losskit hook (expected a @losskit.hookimpl register_losses)")


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return text.splitlines()[0]


def load_plugin(pm: pluggy.PluginManager, info: PluginInfo, load: Callable[[], object]) -> dict[str, LossSpec] | None:
    """Import a plugin and run its hook; the specs it registered, or None when it failed.

    On failure ``info`` is marked ``failed`` with a one-line ``error`` and a
    :class:`PluginWarning` is issued (strict mode: :class:`PluginError` is raised).
    """
    staged: dict[str, LossSpec] = {}
    module: object | None = None
    try:
        with plugin_output_to_stderr():
            module = load()
            _run_hook(pm, info, module, staged)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a broken plugin (even sys.exit()) must not take the others down
        if module is not None and pm.is_registered(module):
            pm.unregister(module)
        info.status, info.error = "failed", _describe(exc)
        message = f"losskit plugin {info.describe()} failed to load and was skipped: {info.error}"
        if env_flag("LOSSKIT_STRICT_PLUGINS"):  # not recorded: the next lookup raises again
            raise PluginError(message + "\n" + traceback.format_exc()) from exc
        warnings.warn(message + " (set LOSSKIT_STRICT_PLUGINS=1 for the traceback)", PluginWarning, stacklevel=5)
        return None
    return staged


def bundled_names(disabled: Iterable[tuple[metadata.EntryPoint, PluginInfo]]) -> dict[str, str]:
    """Short names the disabled bundled plugins would register: ``{loss name: plugin}``.

    The plugins are imported and their hook is called with a register that only
    records names (nothing is registered); one that fails is ignored.
    """
    names: dict[str, str] = {}
    for ep, info in disabled:
        def record(name: object, *_args: object, _plugin: str = info.name, **_kwargs: object) -> None:
            if isinstance(name, str):
                names.setdefault(name, _plugin)

        try:
            with plugin_output_to_stderr(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hook = getattr(ep.load(), "register_losses", None)
                if callable(hook):
                    hook(register=record)
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 - only used for a warning
            continue
    return names


def warn_shadowing_bundled(new: Iterable[LossSpec], existing: Iterable[LossSpec]) -> None:
    """Warn for each third-party loss in ``new`` whose short name a bundled loss in ``existing`` keeps."""
    bundled = {s.name: s for s in existing if s.bundled}
    for spec in new:
        other = bundled.get(spec.name)
        if other is not None and not spec.bundled:
            warnings.warn(
                f"plugin {spec.plugin!r} registers {spec.name!r}, a name of the bundled loss "
                f"{other.qualified_name!r}; {spec.name!r} keeps meaning the bundled loss, use "
                f"{spec.qualified_name!r} for the plugin's",
                PluginWarning,
                stacklevel=6,
            )


def warn_shadowing_disabled(specs: Iterable[LossSpec], names: dict[str, str]) -> None:
    """Warn for each third-party loss taking a short name of a disabled bundled plugin (``names``)."""
    for spec in specs:
        plugin = names.get(spec.name)
        if plugin is not None and not spec.bundled:
            warnings.warn(
                f"plugin {spec.plugin!r} registers {spec.name!r}, a name of the bundled plugin {plugin!r}, which "
                f"LOSSKIT_DISABLE_PLUGINS disables: {spec.name!r} now means {spec.qualified_name!r}",
                PluginWarning,
                stacklevel=4,  # the call that loaded the plugins (get_spec, list_losses, ...)
            )

