"""Run ``tests/tokens/interpreted`` (the Triton kernels under Triton's CPU interpreter) in a
subprocess started with ``TRITON_INTERPRET=1``: the variable must precede the first import of
``triton``, which this test process cannot guarantee (and must not impose on other tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_triton_kernels_and_edge_inputs_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    folder = Path(__file__).parent / "interpreted"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(folder), "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-x"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary


def test_cpu_path_never_imports_triton():
    """``kernel="auto"`` on CPU runs PyTorch, and the kernel modules (and triton) stay unimported."""
    code = (
        "import sys, torch, losskit\n"
        "x = torch.randn(2, 3, requires_grad=True)\n"
        "losskit.build('token_ce')(x, torch.tensor([0, 1])).backward()\n"
        "h = torch.randn(2, 3, requires_grad=True)\n"
        "losskit.build('linear_token_ce')(h, torch.randn(4, 3), torch.tensor([0, 1])).backward()\n"
        "print('triton' in sys.modules, 'losskit_plugins.tokens.triton_kernel' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["False", "False"]
