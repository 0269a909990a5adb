"""`losskit bench` end to end: the real console entry point, JSON validated against its schema, PNG."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib.image
import pytest
import torch

from losskit.bench import load_report, report_schema
from losskit.cli import main

FAST = ["--repeat", "1", "--warmup", "1", "--min-run-time", "0.001", "--no-progress"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "losskit", "bench", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_json_and_plot_of_a_cli_run(tmp_path):
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    proc = _run(
        "focal", "--size", "tiny", "--set", "gamma=1.5", "--json", str(out), "--plot", str(png), *FAST
    )
    assert proc.returncode == 0, proc.stderr
    assert "torchvision.sigmoid_focal_loss" in proc.stdout and "fwd+bwd" in proc.stdout

    data = json.loads(out.read_text())
    schema = report_schema()
    assert set(schema["required"]) <= set(data) and set(data) <= set(schema["properties"])
    report = load_report(out)  # pydantic validation against the same schema (extra fields forbidden)
    m = report.machine
    assert m.torch_version == torch.__version__ and m.device == "cpu" and m.device_name == m.cpu_model
    assert m.cpu_model and m.torch_threads >= 1 and m.load_average is not None
    assert report.command.startswith("losskit bench focal --size tiny")
    (case,) = report.cases
    assert case.size == {"N": 5, "C": 3} and case.config["gamma"] == 1.5
    assert case.main.memory.status == "ok" and case.main.memory.peak_bytes >= 0
    assert "isolated process" in report.memory_measure

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(png).ndim == 3


def test_schema_rejects_a_malformed_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 1, "cases": [], "surprise": 1}))
    with pytest.raises(ValueError, match="machine"):
        load_report(bad)


def test_device_cuda_without_cuda_is_a_clear_error(no_cuda_env):
    proc = _run("focal", "--device", "cuda", env=no_cuda_env)
    assert proc.returncode == 1
    assert "CUDA is not available" in proc.stderr and "Traceback" not in proc.stderr


def test_usage_errors_exit_1_with_a_message(capsys):
    assert main(["bench", "focal", "--size", "Q=3", *FAST]) == 1
    assert "unknown key(s) ['Q']" in capsys.readouterr().err
    assert main(["bench", "focal", "--set", "gamma", *FAST]) == 1
    assert "FIELD=VALUE" in capsys.readouterr().err


def test_exit_status_1_when_an_implementation_errors_oom_is_not_failure(probe, capsys):
    assert main(["bench", "bench_probe:alloc", "--size", "tiny", "--no-memory", "--markdown", *FAST]) == 1
    out = capsys.readouterr().out
    assert out.startswith("| loss | size | impl |") and "| OOM |" in out and "| ERROR |" in out


def test_threads_option_sets_the_recorded_thread_count(tmp_path):
    out = tmp_path / "t.json"
    proc = _run("focal", "--size", "tiny", "--threads", "1", "--no-memory", "--json", str(out), *FAST)
    assert proc.returncode == 0, proc.stderr
    assert load_report(out).machine.torch_threads == 1
