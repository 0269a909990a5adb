"""Peak extra memory of one forward+backward.

CUDA: ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``,
minus what was allocated before the call (inputs, module), in the benchmarking process.

CPU: in an isolated child process (``python -m losskit.bench.memory_child``), so the
parent's allocator state and earlier cases do not leak into the number. The measure
is the peak resident set size during the call minus the resident set size just
before it (Linux: ``VmHWM`` after resetting it through ``/proc/self/clear_refs``,
minus ``VmRSS``; elsewhere ``resource.getrusage(...).ru_maxrss`` growth, which can
only see a peak higher than any earlier one). glibc is told to serve allocations
above 64 KiB with ``mmap`` (``MALLOC_MMAP_THRESHOLD_``) and freed memory is trimmed
between implementations, so freed tensors leave the RSS and every implementation
starts from the same floor. A warm-up call runs first; its one-time costs
(thread pools, kernel caches) are not counted.

One child measures a list of jobs (implementations of cases) one after the other
and reports each as a JSON line; if it dies (e.g. killed by the kernel's OOM killer)
the job it was on is reported as ``oom`` and a new child measures the rest.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from losskit.bench.results import MemoryResult

__all__ = ["CHILD_ENV", "cpu_peak_bytes", "cuda_peak_bytes", "measure_cpu_memory", "trim_heap"]

#: Set to "1" in the isolated memory process.
CHILD_ENV = "LOSSKIT_BENCH_MEMORY_CHILD"
CUDA_METHOD = "cuda.max_memory_allocated"
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072"}
_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def cuda_peak_bytes(step: Callable[[], Any], device: torch.device) -> int:
    """Peak CUDA memory allocated by ``step()`` beyond what was allocated before it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return max(0, torch.cuda.max_memory_allocated(device) - before)


def _status_kib(field: str) -> int:
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in {_PROC_STATUS}")


def trim_heap() -> None:
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _can_reset_hwm() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        _status_kib("VmHWM")
        return True
    except OSError:
        return False


def cpu_peak_bytes(step: Callable[[], Any]) -> tuple[int, str]:
    """Peak RSS growth of this process during ``step()``: ``(bytes, method)``.

    Meant for a fresh process (see the module doc); ``method`` is ``"rss_hwm"``
    (Linux, exact peak of this call) or ``"ru_maxrss"`` (a lower bound elsewhere).
    """
    import resource

    trim_heap()
    if _can_reset_hwm():
        before = _status_kib("VmRSS")
        _CLEAR_REFS.write_text("5")  # VmHWM := current RSS
        step()
        return max(0, _status_kib("VmHWM") - before) * 1024, "rss_hwm"
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * scale, "ru_maxrss"


def measure_cpu_memory(jobs: Sequence[Mapping[str, Any]], *, timeout: float | None = None) -> list[MemoryResult]:
    """Measure every job in isolated child processes; one result per job, in order.

    A job is one implementation of one case: ``loss`` (qualified name), ``module``
    (module defining the loss, imported and registered in the child when the name is
    not an installed plugin's), ``config``, ``size``, ``dtype``, ``seed``, ``threads``
    and ``label`` (``"losskit"`` or a baseline label). One child serves the jobs in
    order (consecutive jobs of the same case share its inputs), trimming the heap
    between them; a child that dies is replaced and the job it was on is reported
    (``oom`` for SIGKILL). ``timeout`` bounds each child.
    """
    results: dict[int, MemoryResult] = {}
    pending = list(range(len(jobs)))
    while pending:
        got, died = _run_child([{**jobs[k], "job": k} for k in pending], timeout)
        results.update(got)
        pending = [k for k in pending if k not in got]
        if died is None and pending:  # exited cleanly without reporting them: should not happen
            died = MemoryResult(status="error", method="subprocess", error="not reported by the memory process")
        if pending:
            results[pending.pop(0)] = died  # type: ignore[assignment]
    return [results[k] for k in range(len(jobs))]


def _run_child(jobs: list[dict[str, Any]], timeout: float | None) -> tuple[dict[int, MemoryResult], MemoryResult | None]:
    # the child sees this process's sys.path, so modules imported from a checkout or a test folder resolve
    env = {**os.environ, **_MALLOC_ENV, CHILD_ENV: "1", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "losskit.bench.memory_child"],
            input=json.dumps(jobs),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return _parse(out), MemoryResult(status="error", method="subprocess", error=f"timed out after {timeout} s")
    got = _parse(proc.stdout)
    if proc.returncode == 0:
        return got, None
    if proc.returncode in (-signal.SIGKILL, 137):
        return got, MemoryResult(status="oom", method="subprocess", error="memory process killed (SIGKILL, likely the OOM killer)")
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return got, MemoryResult(status="error", method="subprocess", error=f"memory process exited with {proc.returncode}: {tail}")


def _parse(stdout: str) -> dict[int, MemoryResult]:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            job = row.pop("job")
            out[job] = MemoryResult.model_validate(row)
    return out
