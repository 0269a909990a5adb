"""benchmarks/gpu_contrastive.py runs on CPU with tiny sizes and writes the JSON the GPU suite reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_contrastive_benchmark_quick_run_on_cpu(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_contrastive.py"), "--out", str(tmp_path), "--quick", "--device", "cpu", "--reps", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads((tmp_path / "gpu-contrastive-cpu.json").read_text())
    assert data["part"] == "contrastive" and data["quick"] is True and len(data["targets"]) == 2
    assert data["skipped"]["Inf-CL"] in ("inf_cl is not installed", "Inf-CL's kernels need CUDA")
    rows = data["rows"]
    cases = {(r["case"], r["loss"], r["dtype"], r["B"]) for r in rows}
    assert cases == {
        ("clip at scale", "clip", dt, b) for dt in ("float32", "bfloat16") for b in (64, 200)
    } | {("everyday", name, "bfloat16", 128) for name in ("clip", "siglip", "infonce")}
    for r in rows:
        assert r["ms"] > 0 and r["peak_extra_mib"] is None  # no CUDA memory statistics on CPU
    fused = [r for r in rows if r["impl"] == "losskit fused"]
    assert len(fused) == 7 and all(r["path"].startswith("torch") for r in fused)
    # on CPU kernel='auto' runs the PyTorch engine: the fused row is the dense path exactly
    assert all(r["rel_err_vs_dense"] <= 1e-6 for r in fused if r["case"] == "clip at scale")
    assert "| impl | ms | peak extra MiB |" in run.stdout
