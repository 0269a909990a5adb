"""The isolated CPU memory process: ``python -m losskit.bench.memory_child``.

Reads a JSON list of jobs on stdin (see :func:`losskit.bench.memory.measure_cpu_memory`),
rebuilds each case (same factory and seed as the timing process), and prints one JSON
line per job: ``{"job", "status", "peak_bytes", "method", "error"}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

from losskit.bench.cases import build_impls, draw_inputs, is_oom
from losskit.bench.memory import cpu_peak_bytes, trim_heap
from losskit.bench.timing import make_step


def _resolve_spec(name: str, module: str | None) -> Any:
    """The spec of ``name`` (qualified) in the child: installed plugins, else ``module``'s hook."""
    import importlib

    from losskit.errors import UnknownLossError
    from losskit.registry import default_registry

    reg = default_registry()
    try:
        return reg.get_spec(name)
    except UnknownLossError:
        if module is None:
            raise
    reg.add_plugin(importlib.import_module(module), name=name.partition(":")[0])
    return reg.get_spec(name)


def _failure(exc: Exception) -> dict[str, Any]:
    first = (str(exc).splitlines() or [""])[0]
    return {"status": "oom" if is_oom(exc) else "error", "error": f"{type(exc).__name__}: {first}"}


def _case_key(job: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in job.items() if k not in ("job", "label")}, sort_keys=True)


def _build(job: dict[str, Any], device: torch.device) -> Any:
    """``(inputs, {label: Impl})`` of the job's case, or the exception building it raised."""
    try:
        spec = _resolve_spec(job["loss"], job.get("module"))
        inputs = draw_inputs(spec, job["size"], dtype=job["dtype"], device=device, seed=int(job["seed"]))
        return inputs, {i.label: i for i in build_impls(spec, job.get("config"), device)}
    except Exception as exc:  # every implementation of this case fails the same way
        return exc


def _measure(built: Any, label: str) -> dict[str, Any]:
    if isinstance(built, Exception):
        return _failure(built)
    inputs, impls = built
    impl = impls[label]
    step = make_step(impl.fn, inputs.args, inputs.kwargs, backward=True, wrt=impl.wrt(inputs))
    try:
        step()  # warm-up
        peak, method = cpu_peak_bytes(step)
        return {"status": "ok", "peak_bytes": peak, "method": method}
    except Exception as exc:  # reported per implementation, like the timing
        return _failure(exc)


def main() -> None:
    """Serve the list of jobs read from stdin (see :func:`losskit.bench.memory.measure_cpu_memory`)."""
    jobs = json.loads(sys.stdin.read())
    device = torch.device("cpu")
    current: tuple[str, Any] | None = None  # (case key, what _build returned)
    for job in jobs:
        torch.set_num_threads(int(job["threads"]))
        key = _case_key(job)
        if current is None or current[0] != key:
            current = None  # free the previous case's inputs before drawing new ones
            trim_heap()
            current = (key, _build(job, device))
        row = _measure(current[1], job["label"])
        trim_heap()
        print(json.dumps({"job": job["job"], "method": "subprocess", **row}), flush=True)


if __name__ == "__main__":
    main()
