"""Short and qualified loss names: resolution rules and "did you mean" suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from losskit.errors import AmbiguousLossError
from losskit.spec import LossSpec

__all__ = ["resolve_name", "suggest"]


def resolve_name(specs: Mapping[str, LossSpec], name: str) -> LossSpec | None:
    """The spec ``name`` means among ``specs`` (qualified name -> spec), or None.

    A qualified ``plugin:loss`` is looked up as is. A short name means the bundled
    loss of that name if there is one, else the only loss of that name.

    Raises:
        AmbiguousLossError: a short name registered by several third-party plugins.
    """
    if ":" in name:
        return specs.get(name)
    candidates = [s for s in specs.values() if s.name == name]
    bundled = [s for s in candidates if s.bundled]
    if len(bundled) == 1:
        return bundled[0]
    if len(candidates) > 1:
        raise AmbiguousLossError(name, [s.qualified_name for s in candidates])
    return candidates[0] if candidates else None


def suggest(specs: Iterable[LossSpec], name: str) -> list[str]:
    """Up to three registered names close to ``name``; a case-insensitive match comes first."""
    specs = list(specs)
    pool = sorted({s.name for s in specs} | {s.qualified_name for s in specs})
    lower: dict[str, str] = {}
    for candidate in pool:
        lower.setdefault(candidate.lower(), candidate)
    exact = [lower[name.lower()]] if name.lower() in lower else []
    close = [lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)]
    return list(dict.fromkeys(exact + close))[:3]
