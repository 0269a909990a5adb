"""The data model of a benchmark run: what ``losskit bench`` measures and writes as JSON.

Every model forbids unknown fields, so ``BenchReport.model_validate_json(text)`` is a
schema check of a results file, and :func:`losskit.bench.report_schema` gives the
same schema as JSON Schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CaseResult", "ImplResult", "MachineInfo", "MemoryResult", "Ratios", "Status", "Timing"]

#: ``ok``; ``oom`` (out of memory: an allocation failed or the isolated process was
#: killed); ``error`` (any other exception, message kept); ``skipped`` (not measured).
Status = Literal["ok", "oom", "error", "skipped"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Timing(_Model):
    """Seconds per call over ``repeat`` measurements of ``number`` calls each (after warm-up)."""

    median_s: float = Field(ge=0, description="Median of the per-call times.")
    iqr_s: float = Field(ge=0, description="Interquartile range (75th - 25th percentile) of the per-call times.")
    times_s: list[float] = Field(description="Per-call time of each measurement (total / number).")
    number: int = Field(ge=1, description="Calls per measurement.")
    warmup: int = Field(ge=0, description="Untimed calls before the first measurement.")


class MemoryResult(_Model):
    """Peak memory of one forward+backward beyond what was allocated before it (inputs, module)."""

    status: Status
    peak_bytes: int | None = Field(None, ge=0, description="Peak extra bytes; null unless status is ok.")
    method: str = Field(description="How it was measured, e.g. 'cuda.max_memory_allocated' or 'rss_hwm'.")
    error: str | None = None


class ImplResult(_Model):
    """One implementation (the losskit loss, or one of its baselines) at one size."""

    impl: str = Field(description="'losskit' for the loss itself, else the baseline's label.")
    status: Status
    error: str | None = Field(None, description="First line of the exception for status error/oom.")
    forward: Timing | None = None
    forward_backward: Timing | None = None
    memory: MemoryResult | None = None
    throughput: float | None = Field(
        None, ge=0, description="Items (the case's throughput_unit) per second of forward+backward."
    )


class Ratios(_Model):
    """losskit / baseline, from the same run: below 1 means losskit is faster or leaner."""

    forward: float | None = None
    forward_backward: float | None = None
    memory: float | None = None


class CaseResult(_Model):
    """One loss at one size, dtype and device, with its baselines measured in the same run."""

    loss: str = Field(description="Name as given (short or qualified).")
    qualified_name: str
    config: dict = Field(description="The loss config that was timed (JSON).")
    size_label: str = Field(description="Preset name ('small', ...) plus overrides, e.g. 'small,B=512'.")
    size: dict[str, int]
    throughput_keys: list[str] | None = Field(
        None, description="Size keys whose product is the items per call (null: no throughput)."
    )
    throughput_unit: str = Field("samples", description="What the throughput counts, e.g. 'samples' or 'tokens'.")
    dtype: Literal["fp32", "bf16", "fp16"]
    device: str
    seed: int = Field(description="Seed of the input generator.")
    status: Status = Field(description="Status of the loss row (not of the baselines).")
    impls: list[ImplResult]
    ratios: dict[str, Ratios] = Field(default_factory=dict, description="Baseline label -> losskit / baseline.")

    @property
    def main(self) -> ImplResult:
        """The row of the losskit loss itself."""
        return self.impls[0]

    def impl(self, label: str) -> ImplResult:
        """The row of one implementation by label (``"losskit"`` or a baseline label)."""
        for r in self.impls:
            if r.impl == label:
                return r
        raise KeyError(f"{self.loss}: no implementation {label!r}; have {[r.impl for r in self.impls]}")


class MachineInfo(_Model):
    """Where a benchmark ran (recorded with every JSON results file)."""

    cpu_model: str
    cpu_count: int | None = Field(description="Logical CPUs of the machine.")
    torch_threads: int = Field(description="torch.get_num_threads() during the run.")
    torch_version: str
    python_version: str
    platform: str
    device: str = Field(description="'cpu' or 'cuda:N'.")
    device_name: str = Field(description="GPU name for CUDA, else the CPU model.")
    cuda_version: str | None = None
    load_average: list[float] | None = Field(
        None, description="1, 5 and 15-minute load averages when the run started (how busy the machine was)."
    )
