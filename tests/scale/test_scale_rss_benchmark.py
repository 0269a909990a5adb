"""benchmarks/contrastive_rss_steps.py runs end to end on tiny sizes (a subprocess per
configuration) and reports a per-step peak-RSS curve per configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "contrastive_rss_steps.py"


def test_rss_benchmark_reports_every_configuration_and_step(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--batch", "96", "--dim", "8", "--steps", "3", "--chunks", "16", "--threads", "1"]
    proc = subprocess.run(cmd + ["--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "losskit clip, chunk_size=16: step 3 peak" in proc.stderr  # per-step progress of the child
    report = json.loads((tmp_path / "contrastive_rss_steps.json").read_text())
    assert report["config"] == {"batch": 96, "dim": 8, "steps": 3, "threads": 1}
    assert [r["steps"] for r in report["results"]] == [3, 3]  # the dense baseline: min(steps, --dense-steps)
    dense, tiled = report["results"]
    assert dense["chunk"] is None and dense["impl"] in ("open_clip", "dense_ce")
    assert tiled["chunk"] == 16 and tiled["impl"] == "losskit"
    for row in (dense, tiled):
        peaks = row["peak_bytes_after_step"]
        assert len(peaks) == 3 and peaks == sorted(peaks)  # a high-water mark never goes down
        assert row["peak_bytes"] == peaks[-1] >= 0
    assert tiled["fraction_of_dense"] == tiled["peak_bytes"] / dense["peak_bytes"] if dense["peak_bytes"] else True
    assert "| losskit clip, chunk_size=16 |" in proc.stdout
