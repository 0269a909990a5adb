"""Discovery of losskit plugins through the ``losskit`` entry-point group.

Environment variables (read each time plugins are loaded):

- ``LOSSKIT_STRICT_PLUGINS=1``: a plugin that fails re-raises (with its traceback)
  instead of being reported and skipped.
- ``LOSSKIT_DISABLE_PLUGIN_AUTOLOAD=1``: load only the plugins bundled with losskit.
- ``LOSSKIT_DISABLE_PLUGINS=a,b``: never load the plugins (entry-point names) or
  distributions named; names compare in normalised form (PEP 503: case-insensitive,
  ``-``, ``_`` and ``.`` alike), so ``lkp_sysexit`` blocks the distribution ``LKP-SysExit``.

Plugin code (its import and its hook) runs with ``sys.stdout`` sent to ``sys.stderr``,
so a plugin that prints cannot corrupt a command's machine-readable output.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Literal

from losskit.hooks import ENTRY_POINT_GROUP

__all__ = [
    "BUNDLED_DISTRIBUTION",
    "PluginInfo",
    "disabled_plugins",
    "discover",
    "env_flag",
    "is_disabled",
    "normalise_name",
    "plugin_output_to_stderr",
]


BUNDLED_DISTRIBUTION = "losskit"

Status = Literal["loaded", "failed", "disabled"]


@dataclass
class PluginInfo:
    """What ``losskit plugins`` reports about one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    bundled: bool = False
    status: Status = "loaded"
    error: str | None = None
    losses: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """``name (distribution version)`` for messages."""
        dist = f"{self.distribution} {self.version}" if self.distribution else "not installed"
        return f"{self.name} ({dist})"


def env_flag(var: str) -> bool:
    """True when environment variable ``var`` is set to 1/true/yes/on."""
    return os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}


def normalise_name(name: str) -> str:
    """PEP 503 form of a plugin or distribution name: ``LKP_SysExit`` -> ``lkp-sysexit``."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def disabled_plugins() -> set[str]:
    """Names listed in ``LOSSKIT_DISABLE_PLUGINS`` (comma separated), normalised."""
    raw = os.environ.get("LOSSKIT_DISABLE_PLUGINS", "")
    return {normalise_name(part) for part in raw.split(",") if part.strip()}


def is_disabled(info: PluginInfo, blocked: set[str]) -> bool:
    """Whether ``info``'s entry-point name or distribution is in ``blocked`` (normalised names)."""
    names = {info.name, info.distribution or ""} - {""}
    return any(normalise_name(n) in blocked for n in names)


@contextlib.contextmanager
def plugin_output_to_stderr() -> Iterator[None]:
    """Send ``print``s of plugin code to ``sys.stderr`` for the duration of the block."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def discover() -> list[tuple[metadata.EntryPoint, PluginInfo]]:
    """Entry points of the ``losskit`` group, bundled first, then by name.

    Duplicated distributions on ``sys.path`` (an editable install next to a regular
    one) are listed once.
    """
    seen: set[tuple[str, str]] = set()
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else None
        key = (ep.name, ep.value)
        if key in seen:
            continue
        seen.add(key)
        bundled = dist_name is not None and normalise_name(dist_name) == BUNDLED_DISTRIBUTION
        info = PluginInfo(
            name=ep.name,
            distribution=dist_name,
            version=dist.version if dist is not None else None,
            bundled=bundled,
        )
        found.append((ep, info))
    found.sort(key=lambda item: (not item[1].bundled, item[1].name))
    return found
