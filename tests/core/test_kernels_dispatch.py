"""Kernel dispatch: auto / torch / triton, and the errors that say what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from losskit.errors import LosskitError
from losskit.kernels import KernelUnavailableError, triton_available, use_triton


def test_auto_and_torch_never_pick_triton_on_cpu() -> None:
    assert use_triton("auto", torch.device("cpu")) is False
    assert use_triton("torch", torch.device("cpu")) is False
    assert use_triton("torch", torch.device("meta")) is False


def test_auto_picks_triton_on_cuda_exactly_when_triton_imports() -> None:
    # a device object needs no GPU: dispatch reads only its type
    assert use_triton("auto", torch.device("cuda", 0)) is triton_available()


def test_forced_triton_on_cpu_without_interpreter_names_the_fix() -> None:
    code = textwrap.dedent(
        """
        import torch
        from losskit.kernels import KernelUnavailableError, use_triton
        try:
            use_triton("triton", torch.device("cpu"))
        except KernelUnavailableError as e:
            print("ERR", e)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    expected = "needs CUDA tensors, got tensors on cpu" if triton_available() else "needs the triton package"
    assert out.startswith("ERR kernel: 'triton'") and expected in out


def test_forced_triton_runs_under_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if triton_available():
        assert use_triton("triton", torch.device("cpu")) is True
    else:
        with pytest.raises(KernelUnavailableError, match="needs the triton package"):
            use_triton("triton", torch.device("cpu"))


def test_error_is_a_losskit_error() -> None:
    assert issubclass(KernelUnavailableError, LosskitError) and issubclass(KernelUnavailableError, RuntimeError)
