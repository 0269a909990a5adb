"""Fixtures of the bench tests: the probe plugin registered in the default registry, and
the environment of a process that sees no CUDA device."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

import losskit


@pytest.fixture
def probe(monkeypatch):
    """Register tests/bench/losskit_bench_probe.py as plugin ``bench_probe`` for one test.

    Its folder goes on ``sys.path`` so the memory child can import it by name too.
    """
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    module = importlib.import_module("losskit_bench_probe")
    with losskit.temporary_plugin(module, "bench_probe"):
        yield module


@pytest.fixture
def no_cuda_env() -> dict[str, str]:
    """Environment for a subprocess in which ``torch.cuda.is_available()`` is False, on any machine."""
    return {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
