"""The ``register`` callable a plugin's ``register_losses`` hook receives.

It checks what a plugin registers (name, loss class, config class, bench metadata)
and stages one :class:`~losskit.spec.LossSpec` per call; the registry commits the
staged specs only when the whole hook succeeded.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from losskit.config import LossConfig
from losskit.errors import PluginError
from losskit.loss import Loss
from losskit.plugins import PluginInfo
from losskit.spec import LossSpec

if TYPE_CHECKING:
    from losskit.bench.spec import BenchSpec

__all__ = ["LEGACY_BENCH_KEYWORDS", "NAME_PATTERN", "make_registrar"]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

#: ``register`` keywords of losskit <= 0.1 that now belong to :class:`losskit.bench.BenchSpec`.
LEGACY_BENCH_KEYWORDS = ("example_inputs", "sizes", "baselines", "throughput_keys", "throughput_unit")


def _summary(loss_class: type) -> str:
    doc = (loss_class.__doc__ or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


def _check_classes(plugin: str, name: Any, loss_class: Any, config: Any) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PluginError(
            f"plugin {plugin!r}: loss name {name!r} must match {NAME_PATTERN.pattern} (lower case, digits, underscores)"
        )
    if not (isinstance(loss_class, type) and issubclass(loss_class, Loss)):
        raise PluginError(f"plugin {plugin!r}: {name!r} must be a subclass of losskit.Loss, got {loss_class!r}")
    if not (isinstance(config, type) and issubclass(config, LossConfig)):
        raise PluginError(f"plugin {plugin!r}: config of {name!r} must be a losskit.LossConfig subclass, got {config!r}")
    if not issubclass(config, loss_class.config_class):
        raise PluginError(
            f"plugin {plugin!r}: config of {name!r} ({config.__name__}) is not a "
            f"{loss_class.config_class.__name__}, the config_class of {loss_class.__name__}"
        )


def _bench_spec(plugin: str, name: str, bench: Any, legacy: dict[str, Any]) -> BenchSpec | None:
    """The :class:`~losskit.bench.BenchSpec` of one registration (legacy keywords converted)."""
    from losskit.bench.spec import BenchSpec

    unknown = sorted(set(legacy) - set(LEGACY_BENCH_KEYWORDS))
    if unknown:
        raise PluginError(
            f"plugin {plugin!r}: register({name!r}, ...) got unexpected keyword(s) {unknown}; "
            "expected config=, summary=, bench="
        )
    if legacy:
        if bench is not None:
            raise PluginError(f"plugin {plugin!r}: register({name!r}, ...) got bench= and {sorted(legacy)}; use bench= only")
        warnings.warn(
            f"plugin {plugin!r}: register({name!r}, ..., {'=, '.join(sorted(legacy))}=) is deprecated; pass "
            "bench=losskit.bench.BenchSpec(...) with the same fields",
            DeprecationWarning,
            stacklevel=3,  # the plugin's register(...) call
        )
        bench = BenchSpec(**legacy)
    if bench is not None and not isinstance(bench, BenchSpec):
        raise PluginError(f"plugin {plugin!r}: bench of {name!r} must be a losskit.bench.BenchSpec, got {bench!r}")
    return bench


def make_registrar(info: PluginInfo, staged: dict[str, LossSpec]) -> Callable[..., None]:
    """A ``register`` function staging the specs of plugin ``info`` into ``staged``."""

    def register(
        name: str,
        loss_class: type,
        *,
        config: type[LossConfig],
        summary: str | None = None,
        bench: BenchSpec | None = None,
        **legacy: Any,
    ) -> None:
        """Register ``loss_class`` under ``name`` with its config model ``config``.

        Args:
            name: short name (lower case, digits, underscores).
            loss_class: a :class:`losskit.Loss` subclass.
            config: its :class:`losskit.LossConfig` subclass.
            summary: one line for ``losskit list`` (default: first docstring line).
            bench: a :class:`losskit.bench.BenchSpec` (example inputs, sizes, baselines).
        """
        _check_classes(info.name, name, loss_class, config)
        try:
            bench = _bench_spec(info.name, name, bench, legacy)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"plugin {info.name!r}: bench of {name!r}: {exc}") from exc
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
            bench=bench,
        )

    return register
