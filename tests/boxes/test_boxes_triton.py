"""The fused Triton path of ``bbox``: dispatch, and its checks under Triton's CPU interpreter.

The interpreted checks (``triton_checks.py``: values and gradients against the PyTorch
path and the float64 reference) run in a subprocess, because ``TRITON_INTERPRET=1``
must be set before the kernels are imported and must not leak into other tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import losskit
from losskit.kernels import KernelUnavailableError

HERE = Path(__file__).parent


def test_interpreted_kernels_match_the_torch_path_and_the_reference() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "pytest", str(HERE / "triton_checks.py"), "-q", "-p", "no:xdist", "-p", "no:cacheprovider"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=HERE.parent.parent)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout


def test_triton_on_cpu_without_the_interpreter_says_what_is_missing() -> None:
    with pytest.raises(KernelUnavailableError, match=r"kernel: 'triton' needs CUDA tensors, got tensors on cpu"):
        losskit.build("bbox", kernel="triton")(torch.rand(3, 4), torch.rand(3, 4))


def test_auto_runs_the_torch_path_on_cpu_without_importing_triton_kernels() -> None:
    code = (
        "import sys, torch, losskit; b = torch.tensor([[0., 0., 1., 1.]]);"
        "losskit.build('bbox')(b, b + 0.1);"
        "assert 'losskit_plugins.boxes.fused' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_kernels_compile_for_sm90_without_spills() -> None:
    """The real Triton compiler and ptxas (no GPU needed) accept the kernels; nothing spills to local memory."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, str(HERE / "triton_compile.py")], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reports = [line for line in done.stdout.splitlines() if line.startswith("KIND=")]
    assert len(reports) == 4
    assert all("0 bytes spill stores" in line for line in reports), reports
