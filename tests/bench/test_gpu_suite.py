"""benchmarks/gpu_suite.py runs the part scripts and merges their JSON (CPU smoke run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_suite_finds_every_part_script() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_suite
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    names = {p.stem for p in gpu_suite.part_scripts()}
    assert {"gpu_contrastive", "gpu_boxes_mixture"} <= names and "gpu_suite" not in names


def test_quick_cpu_suite_merges_the_part_results(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--device", "cpu", "--quick", "--out", str(tmp_path), "--only", "boxes_mixture"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    merged = json.loads((tmp_path / "gpu-suite-cpu.json").read_text())
    assert merged["failed"] == {} and list(merged["parts"]) == ["boxes_mixture"]
    part = merged["parts"]["boxes_mixture"]
    assert part == json.loads((tmp_path / "gpu-boxes_mixture-cpu.json").read_text()) | {"wall_s": part["wall_s"]}
    assert part["wall_s"] > 0
