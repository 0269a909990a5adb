"""The fused Triton kernels of the contrastive losses, run on CPU tensors under Triton's interpreter.

``TRITON_INTERPRET=1`` must be set before Triton is imported, so the checks
(``interpreted_triton_checks.py``: values and gradients against the float64 brute force and
the PyTorch tiled path, groups, masks, offsets, ragged blocks, fp32 / bf16 / fp16) run in a
fresh process; this test fails when any of them fails or when fewer than all of them ran.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

CHECKS = Path(__file__).with_name("interpreted_triton_checks.py")


def test_fused_kernels_under_the_triton_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", str(CHECKS), "-q", "-p", "no:xdist", "-p", "no:cacheprovider"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=CHECKS.parents[2])
    expected = len(re.findall(r"^def test_", CHECKS.read_text(), flags=re.M))
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= expected, summary
