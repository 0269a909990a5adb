"""``losskit bench``: timing and peak memory of registered losses against their baselines.

Python API (stable; the ``benchmarks/`` scripts use it)::

    from losskit.bench import run_case, run_cases, make_report, machine_info, text_table

    case = run_case("focal", size="small", dtype="fp32", device="cpu", repeat=5)
    case.main.forward_backward.median_s        # seconds per forward+backward call
    case.ratios["torchvision.sigmoid_focal_loss"].forward_backward   # losskit / baseline
    print(text_table([case]))

    cases = run_cases(["focal"], sizes=["small", "medium"])
    report = make_report(cases, machine_info(torch.device("cpu")), command="python benchmarks/focal.py")
    report.write_json("benchmarks/results/focal.json")
    plot_cases(cases, "benchmarks/results/focal.png")

:func:`time_callable` times any callable the same way (median and IQR after warm-up).
Losses declare their cases through the registry: ``register(..., example_inputs=factory,
sizes={...}, baselines={"label": fn})`` (see :class:`losskit.LossSpec`).
"""

from __future__ import annotations

from losskit.bench.cases import BATCH_KEYS, LOSS_IMPL, is_oom, parse_size, resolve_device
from losskit.bench.machine import machine_info
from losskit.bench.plot import plot_cases
from losskit.bench.report import BenchReport, load_report, make_report, report_schema
from losskit.bench.results import CaseResult, ImplResult, MachineInfo, MemoryResult, Ratios, Timing
from losskit.bench.runner import add_cpu_memory, run_case, run_cases
from losskit.bench.table import format_bytes, format_time, markdown_table, text_table
from losskit.bench.timing import make_step, time_callable

__all__ = [
    "BATCH_KEYS",
    "LOSS_IMPL",
    "BenchReport",
    "CaseResult",
    "ImplResult",
    "MachineInfo",
    "MemoryResult",
    "Ratios",
    "Timing",
    "add_cpu_memory",
    "format_bytes",
    "format_time",
    "is_oom",
    "load_report",
    "machine_info",
    "make_report",
    "make_step",
    "markdown_table",
    "parse_size",
    "plot_cases",
    "report_schema",
    "resolve_device",
    "run_case",
    "run_cases",
    "text_table",
    "time_callable",
]
