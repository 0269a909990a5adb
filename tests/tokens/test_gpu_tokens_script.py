"""``benchmarks/gpu_tokens.py`` runs on CPU with tiny sizes and writes the JSON the GPU suite reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_tokens.py"


def test_quick_cpu_run_writes_the_report(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "gpu-tokens-cpu.json").read_text())
    assert report["device"] == "cpu" and report["dtype"] == "bfloat16"
    assert report["sizes"] == {"N": 64, "V": 257, "H": [32]}
    cases = {c["case"]: c for c in report["cases"]}
    assert set(cases) == {"token_ce N=64 V=257", "linear_token_ce N=64 H=32 V=257"}
    token = cases["token_ce N=64 V=257"]["results"]
    assert set(token) == {"losskit token_ce", "losskit token_ce in_place", "F.cross_entropy(logits.float())"}
    linear = cases["linear_token_ce N=64 H=32 V=257"]["results"]
    assert set(linear) == {"losskit linear_token_ce", "lm_head + CE"}
    for case in cases.values():
        assert case["skipped"].get("liger-kernel") in {"not importable: skipped", "needs CUDA: skipped"}
        for r in case["results"].values():
            assert r["median_ms"] > 0 and r["peak_extra_mib"] is None
    # same inputs, same loss: losskit agrees with its anchors (bf16 inputs, fp32 arithmetic)
    for results, ref in ((token, "F.cross_entropy(logits.float())"), (linear, "lm_head + CE")):
        for r in results.values():
            assert abs(r["loss"] - results[ref]["loss"]) < 2e-2 * abs(results[ref]["loss"])
    assert "| token_ce N=64 V=257 | losskit token_ce |" in done.stdout
