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
Losses declare their cases through the registry with one :class:`BenchSpec`:
``register(..., bench=BenchSpec(example_inputs=factory, sizes={...}, baselines={"label": fn}))``.

The names below are imported on first use (PEP 562), so a plugin importing
:class:`BenchSpec` does not pull in the timing machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "BenchSpec": ".spec",
    "DEFAULT_SIZES": ".spec",
    "BATCH_KEYS": ".cases",
    "LOSS_IMPL": ".cases",
    "is_oom": ".cases",
    "parse_size": ".cases",
    "resolve_device": ".cases",
    "machine_info": ".machine",
    "plot_cases": ".plot",
    "BenchReport": ".report",
    "load_report": ".report",
    "make_report": ".report",
    "report_schema": ".report",
    "CaseResult": ".results",
    "ImplResult": ".results",
    "MachineInfo": ".results",
    "MemoryResult": ".results",
    "Ratios": ".results",
    "Timing": ".results",
    "add_cpu_memory": ".runner",
    "run_case": ".runner",
    "run_cases": ".runner",
    "format_bytes": ".table",
    "format_time": ".table",
    "markdown_table": ".table",
    "text_table": ".table",
    "make_step": ".timing",
    "time_callable": ".timing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'losskit.bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from losskit.bench.cases import BATCH_KEYS, LOSS_IMPL, is_oom, parse_size, resolve_device
    from losskit.bench.machine import machine_info
    from losskit.bench.plot import plot_cases
    from losskit.bench.report import BenchReport, load_report, make_report, report_schema
    from losskit.bench.results import CaseResult, ImplResult, MachineInfo, MemoryResult, Ratios, Timing
    from losskit.bench.runner import add_cpu_memory, run_case, run_cases
    from losskit.bench.spec import DEFAULT_SIZES, BenchSpec
    from losskit.bench.table import format_bytes, format_time, markdown_table, text_table
    from losskit.bench.timing import make_step, time_callable
