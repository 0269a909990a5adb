"""``benchmarks/gpu_boxes_mixture.py`` runs on the CPU with tiny sizes and writes the JSON the GPU suite reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_cpu_run_writes_every_case_and_ratio(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_boxes_mixture.py"), "--device", "cpu", "--quick", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "gpu-boxes_mixture-cpu.json").read_text())
    assert result["part"] == "boxes_mixture" and result["device_type"] == "cpu" and result["quick"] is True
    cases = {case["case"]: case for case in result["cases"]}
    assert set(cases) == {"bbox_giou", "mixture_static", "mixture_uncertainty", "mixture_dwa"}
    bbox = cases["bbox_giou"]["impls"]
    assert set(bbox) == {"bbox[kernel=auto]", "bbox[kernel=torch]", "torchvision.generalized_box_iou_loss"}
    values = [row["value"] for row in bbox.values()]
    assert max(values) - min(values) < 1e-5  # the three compute the same GIoU loss
    for case in result["cases"]:
        for row in case["impls"].values():
            assert row["ms"] > 0 and row["peak_mib"] is None  # no CUDA: no memory figure
    assert set(result["ratios"]) == {
        "bbox_time_over_torchvision",
        "bbox_memory_over_torchvision",
        "mixture_static_over_by_hand",
        "mixture_uncertainty_over_by_hand",
        "mixture_dwa_over_by_hand",
    }
    assert result["ratios"]["bbox_memory_over_torchvision"] is None
    assert all(v > 0 for k, v in result["ratios"].items() if k != "bbox_memory_over_torchvision")
    assert "| bbox_giou | bbox[kernel=auto] |" in done.stdout
