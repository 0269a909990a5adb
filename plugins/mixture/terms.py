"""Calling one term of a ``mixture``: its inputs unpacked, and every error naming the term.

A ``TypeError``/``ValueError`` raised by a term comes back as the same exception type
with ``terms.<term>: `` in front (``terms.itc: text_features: expected ...``). A call
that does not fit the term's signature (a wrong keyword, a missing input) is reported
with that signature, found by ``inspect.signature(term.compute).bind`` — only after the
call failed, so a correct call pays nothing for it.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

import losskit

__all__ = ["call_term"]


def call_term(name: str, term: losskit.Loss, inputs: Any, metrics: bool) -> losskit.LossOutput:
    """Run term ``name`` on its inputs: ``compute`` (with its metrics) or ``forward``.

    ``inputs``: a dict of keyword inputs, a tuple/list of positional inputs or
    :class:`losskit.Inputs`. The term must return a scalar.
    """
    args, kwargs = _split(name, inputs)
    try:
        out = term.compute(*args, **kwargs) if metrics else losskit.LossOutput(loss=term(*args, **kwargs))
    except TypeError as exc:
        raise (_signature_error(name, term, args, kwargs) or _named(name, exc)) from exc
    except ValueError as exc:
        raise _named(name, exc) from exc
    if out.loss.dim() != 0:
        raise ValueError(f"terms.{name}: the term returned a loss of shape {tuple(out.loss.shape)}, expected a scalar")
    return out


def _split(name: str, inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(inputs, losskit.Inputs):
        return tuple(inputs.args), dict(inputs.kwargs)
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    raise TypeError(
        f"terms.{name}: expected the term's inputs as a dict of keyword inputs, a tuple of positional inputs "
        f"or losskit.Inputs, got {type(inputs).__name__}"
    )


def _named(name: str, exc: Exception) -> Exception:
    """``exc`` with ``terms.<name>: `` in front of its message (same type); an exception whose
    constructor takes other arguments keeps its message and gets the term as a note."""
    prefix = f"terms.{name}: "
    if str(exc).startswith(prefix):
        return exc
    try:
        named = type(exc)(prefix + str(exc))
    except Exception:  # noqa: BLE001 - any constructor signature: fall back to a note
        exc.add_note(f"raised by the mixture's term {name!r}")
        return exc
    return named


def _signature_error(name: str, term: losskit.Loss, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TypeError | None:
    """A ``TypeError`` naming the term and its real signature when the inputs do not bind to it, else None."""
    signature = inspect.signature(term.compute)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        accepted = list(signature.parameters)
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
        unknown = [] if takes_any else [key for key in kwargs if key not in accepted]
        problem = "; ".join(_unexpected(key, accepted) for key in unknown) or str(exc)
        plain = signature.replace(
            parameters=[p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()],
            return_annotation=inspect.Signature.empty,
        )
        return TypeError(f"terms.{name}: {problem}; {type(term).__name__}.compute{plain} takes the inputs")
    return None


def _unexpected(key: str, accepted: list[str]) -> str:
    close = difflib.get_close_matches(key, accepted, 1)
    return f"got an unexpected keyword argument {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
