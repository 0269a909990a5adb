"""Tests that run the token losses' Triton kernels on CPU tensors under Triton's interpreter.

``TRITON_INTERPRET=1`` must be in the environment before ``triton`` is first imported
(``triton.jit`` decides at decoration time, for Triton's own library functions too), so
these modules are collected only in a process started with it:
``tests/tokens/test_interpreted_kernels.py`` runs them in such a subprocess, and
``TRITON_INTERPRET=1 python -m pytest tests/tokens/interpreted`` runs them directly.
"""

from __future__ import annotations

import os

import pytest

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"

collect_ignore_glob = [] if INTERPRETED else ["test_*.py"]


@pytest.fixture(scope="session")
def interpreted():
    """Check that the kernels really run under the interpreter (compiled ones would need a GPU)."""
    from losskit_plugins.tokens import triton_kernel

    kind = type(triton_kernel._token_rows_kernel).__name__
    assert kind == "InterpretedFunction", f"the Triton kernel is a {kind}: TRITON_INTERPRET=1 was set too late"
