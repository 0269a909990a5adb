"""Which implementation a loss runs: the portable PyTorch path or a Triton kernel.

Losses with a GPU kernel declare ``kernel: KernelField = "auto"`` in their config and call
:func:`use_triton` once per call with their inputs' device:

- ``"auto"``: Triton on CUDA tensors when Triton is importable, PyTorch otherwise;
- ``"torch"``: always the PyTorch path;
- ``"triton"``: always the Triton kernel; :class:`KernelUnavailableError` says what is
  missing when Triton is not installed or the tensors are not on CUDA. With
  ``TRITON_INTERPRET=1`` in the environment (set before the kernels are imported) the
  kernels also run on CPU tensors under Triton's interpreter: slow, for tests.

Kernel modules import ``triton`` lazily (only when a Triton path runs), so importing a
loss never needs Triton.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Annotated, Literal

import torch
from pydantic import Field

from losskit.errors import LosskitError

__all__ = ["Kernel", "KernelField", "KernelUnavailableError", "triton_available", "triton_interpreted", "use_triton"]

#: The values of a loss's ``kernel`` config field.
Kernel = Literal["auto", "triton", "torch"]

#: The ``kernel`` config field: ``kernel: KernelField = "auto"``.
KernelField = Annotated[
    Kernel,
    Field(
        description="Implementation: 'auto' (Triton kernel on CUDA when Triton is installed, else PyTorch), "
        "'triton' (always the Triton kernel; an error says what is missing) or 'torch' (always PyTorch).",
    ),
]


class KernelUnavailableError(LosskitError, RuntimeError):
    """``kernel="triton"`` was asked for where the Triton kernel cannot run."""


@functools.cache
def triton_available() -> bool:
    """Whether ``triton`` can be imported (it ships with PyTorch's CUDA wheels on Linux)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreted() -> bool:
    """Whether Triton kernels run under the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(kernel: Kernel, device: torch.device) -> bool:
    """Whether a loss configured with ``kernel`` runs its Triton kernel on ``device`` (see the module docstring)."""
    if kernel == "torch":
        return False
    if kernel == "auto":
        return device.type == "cuda" and triton_available()
    if not triton_available():
        raise KernelUnavailableError(
            "kernel: 'triton' needs the triton package (pip install triton; it ships with PyTorch's CUDA wheels "
            "on Linux), or use kernel='torch'"
        )
    if device.type != "cuda" and not triton_interpreted():
        raise KernelUnavailableError(
            f"kernel: 'triton' needs CUDA tensors, got tensors on {device}; use kernel='auto' or 'torch' "
            "(or set TRITON_INTERPRET=1 before importing losskit to run the kernels under Triton's CPU interpreter)"
        )
    return True
