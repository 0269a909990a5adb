"""Input checks shared by every loss.

Each helper raises ``TypeError`` (wrong kind of value or dtype) or ``ValueError``
(wrong shape or value) with a message that names the argument and what was
expected, e.g. ``image_features: expected a 2-D float tensor [B, D], got shape (4,)``.

The input policy of every bundled loss (docs/troubleshooting.md, "Input policy"):
checks of shape, dtype and device always run (they need no data); checks that read the
data (finite values, index ranges) follow the loss's ``check_inputs`` field
(:data:`CheckInputs`): ``"auto"`` runs them on CPU tensors in eager mode, where reading
the data is free, and skips them elsewhere (and while ``torch.compile`` traces), so a CUDA step never waits on the host; ``"always"`` runs
them everywhere (one host synchronisation per call on CUDA); ``"never"`` skips them.

The numeric policy of every bundled loss is :func:`compute_dtype`: float64 inputs are
computed in float64, everything else (fp16, bf16, fp32) in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor

__all__ = [
    "CheckInputs",
    "InputChecks",
    "check_finite",
    "check_float",
    "value_checks_enabled",
    "compute_dtype",
    "check_index",
    "check_same_device",
    "check_size",
    "to_float32",
]

_REDUCED = (torch.float16, torch.bfloat16)


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_ndim(t: Tensor, name: str, ndim: int | Sequence[int], what: str, layout: str | None) -> None:
    dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if t.dim() not in dims:
        want = " or ".join(f"{d}-D" for d in dims)
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{name}: expected a {want} {what}{hint}, got shape {_shape(t)}")


def check_float(
    t: object,
    name: str,
    ndim: int | Sequence[int] | None = None,
    *,
    layout: str | None = None,
    finite: bool = False,
) -> Tensor:
    """Check that ``t`` is a floating-point tensor of the given rank; return it.

    Args:
        t: the value to check.
        name: argument name used in the error message.
        ndim: allowed number(s) of dimensions, or None for any.
        layout: shape written for humans, e.g. ``"[B, D]"``, added to the message.
        finite: also reject NaN/inf entries (costs a device sync; use for cheap inputs).
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")
    if ndim is not None:
        _check_ndim(t, name, ndim, "float tensor", layout)
    if finite and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return t


def check_index(
    t: object,
    name: str,
    ndim: int | Sequence[int] | None = None,
    *,
    layout: str | None = None,
    allow_bool: bool = False,
) -> Tensor:
    """Check that ``t`` is an integer (or, with ``allow_bool``, boolean) tensor; return it."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    ok = t.dtype == torch.bool if allow_bool else False
    if not ok and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool):
        kind = "an integer or bool" if allow_bool else "an integer"
        raise TypeError(f"{name}: expected {kind} tensor, got dtype {t.dtype}")
    if ndim is not None:
        _check_ndim(t, name, ndim, "tensor", layout)
    return t


def check_size(t: Tensor, name: str, dim: int, expected: int, other: str) -> None:
    """Check ``t.shape[dim] == expected``; ``other`` says where ``expected`` comes from."""
    if t.shape[dim] != expected:
        raise ValueError(
            f"{name}: size {t.shape[dim]} at dim {dim} does not match {other} ({expected}); "
            f"got shape {_shape(t)}"
        )


def check_same_device(**tensors: Tensor | None) -> None:
    """Check that all given tensors live on one device."""
    seen = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(seen.values())) > 1:
        listing = ", ".join(f"{n} on {d}" for n, d in seen.items())
        raise ValueError(f"inputs must be on one device, got {listing}")


def to_float32(t: Tensor) -> Tensor:
    """Upcast fp16/bf16 to fp32 (losses compute in fp32); other dtypes pass through."""
    return t.float() if t.dtype in _REDUCED else t


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """The dtype a loss computes in: ``float64`` if any given tensor is float64, else
    ``float32`` (fp16/bf16/fp32 inputs are all computed in fp32). ``None`` entries are skipped."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


#: When a loss runs the checks that read its inputs' values (see the module docstring).
InputChecks = Literal["auto", "always", "never"]

#: The ``check_inputs`` config field every bundled loss declares: ``check_inputs: CheckInputs = "auto"``.
CheckInputs = Annotated[
    InputChecks,
    Field(
        description="Checks that read the input values (NaN/inf, index ranges): 'auto' runs them on CPU "
        "tensors and skips them on CUDA (no host synchronisation), 'always' runs them everywhere (one host "
        "sync per call on CUDA), 'never' skips them.",
    ),
]


def value_checks_enabled(mode: InputChecks, device: torch.device) -> bool:
    """Whether checks that read tensor values run for inputs on ``device`` under ``mode``.

    ``"auto"`` means only on the CPU in eager mode: on CUDA a check is a host
    synchronisation, a meta tensor has no values to read, and while ``torch.compile``
    traces a check would break the graph. ``"always"`` runs them everywhere.
    """
    if mode == "always":
        return True
    return mode == "auto" and device.type == "cpu" and not torch.compiler.is_compiling()


def check_finite(**tensors: Tensor | None) -> None:
    """Raise ``ValueError`` naming the first argument holding NaN or inf, with the index
    of its first such entry. One host synchronisation for all tensors (two on failure)."""
    named = [(name, t) for name, t in tensors.items() if t is not None and t.is_floating_point() and t.numel()]
    if not named:
        return
    bad = torch.stack([~torch.isfinite(t).all() for _, t in named]).tolist()
    for (name, t), is_bad in zip(named, bad):
        if is_bad:
            where = tuple(int(i) for i in torch.nonzero(~torch.isfinite(t))[0].tolist())
            value = t[where].item()
            raise ValueError(f"{name}: expected finite values, got {value} at index {where} (shape {_shape(t)})")
