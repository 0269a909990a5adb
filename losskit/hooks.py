"""pluggy hook specifications of losskit.

A plugin is any module or object with a ``register_losses`` function marked with
:data:`hookimpl`; it is found through the ``losskit`` entry-point group::

    # pyproject.toml of a third-party package
    [project.entry-points.losskit]
    focal = "losskit_focal"

    # losskit_focal/__init__.py
    import losskit

    @losskit.hookimpl
    def register_losses(register):
        register("focal", FocalLoss, config=FocalConfig)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from losskit.bench.spec import BenchSpec

__all__ = ["PROJECT", "ENTRY_POINT_GROUP", "Register", "hookimpl", "hookspec"]

PROJECT = "losskit"
ENTRY_POINT_GROUP = "losskit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callable a plugin's ``register_losses`` receives (see :func:`losskit.registrar.make_registrar`)."""

    def __call__(
        self, name: str, loss_class: type, *, config: type, summary: str | None = None, bench: BenchSpec | None = None
    ) -> None: ...


class LosskitHookSpecs:
    """Hooks a losskit plugin may implement."""

    @hookspec
    def register_losses(self, register: Register) -> None:
        """Register this plugin's losses by calling ``register(name, loss_class, config=ConfigClass)``.

        Optional keyword arguments of ``register``: ``summary`` (one line; default: first
        line of the class docstring) and ``bench``, a :class:`losskit.bench.BenchSpec`
        (input factory for the conformance kit and the benchmark, size presets,
        baselines the benchmark compares against, throughput). The keywords
        ``example_inputs``, ``sizes``, ``baselines``, ``throughput_keys`` and
        ``throughput_unit`` of losskit 0.1 still work with a ``DeprecationWarning``.
        """
