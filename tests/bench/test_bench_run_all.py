"""benchmarks/run_all.py renders the README tables from results files (real report, real files)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from losskit.bench import machine_info, make_report, run_case

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "run_all.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("losskit_bench_run_all", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tables_for_bench_reports_and_a_list_of_other_files(tmp_path):
    case = run_case("focal", size="tiny", repeat=1, warmup=1, min_run_time=0.001, memory=False)
    make_report([case], machine_info(torch.device("cpu")), command="losskit bench focal --size tiny").write_json(
        tmp_path / "focal.json"
    )
    (tmp_path / "custom.json").write_text(json.dumps({"benchmark": "something else"}))
    text = _load_script().render_tables(tmp_path)
    assert "## focal" in text and "Reproduce: `losskit bench focal --size tiny`" in text
    assert "| focal | tiny | losskit |" in text and "| torchvision.sigmoid_focal_loss |" in text
    assert "- `benchmarks/results/custom.json`" in text
