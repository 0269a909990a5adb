"""A whole ``losskit bench`` run as JSON: machine info, settings and every case."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from pydantic import Field

from losskit.bench.results import CaseResult, MachineInfo, _Model

__all__ = ["BenchReport", "SCHEMA_VERSION", "load_report", "make_report", "report_schema"]

SCHEMA_VERSION = 1


class BenchReport(_Model):
    """What ``losskit bench --json FILE`` writes (and ``benchmarks/`` scripts record)."""

    schema_version: int = Field(SCHEMA_VERSION, description="Bumped when the format changes incompatibly.")
    created: str = Field(description="UTC time of the run, ISO 8601.")
    command: str = Field(description="How to reproduce the run (command line or script).")
    memory_measure: str = Field(description="How peak memory was measured on this device.")
    machine: MachineInfo
    cases: list[CaseResult]

    def write_json(self, path: str | Path) -> Path:
        """Write the report as indented JSON (creating parent folders); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path


def make_report(cases: list[CaseResult], machine: MachineInfo, *, command: str) -> BenchReport:
    """Bundle results with the machine they ran on and the command that reproduces them."""
    cpu = "peak RSS of one forward+backward minus RSS before it, in an isolated process (VmHWM after clear_refs)"
    cuda = "torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus memory_allocated before"
    return BenchReport(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        command=command,
        memory_measure=cuda if machine.device.startswith("cuda") else cpu,
        machine=machine,
        cases=cases,
    )


def load_report(path: str | Path) -> BenchReport:
    """Read and validate a results file (raises ``pydantic.ValidationError`` if it does not fit the schema)."""
    return BenchReport.model_validate_json(Path(path).read_text(encoding="utf-8"))


def report_schema() -> dict[str, Any]:
    """JSON Schema of a results file."""
    return BenchReport.model_json_schema()

