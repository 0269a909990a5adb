"""Exception hierarchy of losskit.

Every exception raised on purpose by losskit derives from :class:`LosskitError`, so
``except losskit.errors.LosskitError`` catches them all. Where a standard exception
fits too, the losskit error also derives from it (``UnknownLossError`` is a
``LookupError``, ``ConfigError`` a ``ValueError``), so generic handlers keep working.
Bad tensors raise plain ``ValueError``/``TypeError`` whose message names the argument
and the expected shape or dtype.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "AmbiguousLossError",
    "ConfigError",
    "LosskitError",
    "MissingExtraError",
    "PluginError",
    "PluginWarning",
    "SchemaError",
    "UnknownLossError",
]


class LosskitError(Exception):
    """Base class of every error raised on purpose by losskit."""


class UnknownLossError(LosskitError, LookupError):
    """A loss name that no loaded plugin registered.

    The message lists close matches (``difflib``) so a typo tells its own fix.
    """

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        self.name = name
        self.suggestions = list(suggestions)
        msg = f"unknown loss {name!r}"
        if self.suggestions:
            msg += "; did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        msg += " (run `losskit list` to see every registered loss)"
        super().__init__(msg)

    def __str__(self) -> str:  # LookupError would otherwise repr() the message
        return str(self.args[0])


class AmbiguousLossError(LosskitError, LookupError):
    """A short name claimed by several third-party plugins: use a qualified name."""

    def __init__(self, name: str, candidates: Iterable[str]) -> None:
        self.name = name
        self.candidates = sorted(candidates)
        super().__init__(
            f"loss name {name!r} is registered by several plugins; use a qualified name: "
            + ", ".join(self.candidates)
        )

    def __str__(self) -> str:
        return str(self.args[0])


class ConfigError(LosskitError, ValueError):
    """A configuration that failed validation.

    ``errors`` holds ``(path, message)`` pairs; ``str()`` gives one line per bad
    field, ``field.path: message``.
    """

    def __init__(self, errors: Sequence[tuple[str, str]], *, title: str | None = None) -> None:
        self.errors = list(errors)
        lines = [f"{path}: {message}" if path else message for path, message in self.errors]
        if title:
            lines.insert(0, title)
        super().__init__("\n".join(lines))


class PluginError(LosskitError):
    """A plugin that could not be loaded, or that registered something invalid."""


class SchemaError(LosskitError):
    """A loss config that has no JSON Schema (e.g. a field typed ``Callable``)."""


class MissingExtraError(LosskitError, ImportError):
    """A command needs packages of an extra that is not installed; the message gives the ``pip install``."""


class PluginWarning(UserWarning):
    """A plugin was skipped or one of its names is shadowed; the message says which and why."""
