"""The isolated CPU memory process: ``python -m losskit.bench.memory_child``.

Reads a JSON request on stdin (see :func:`losskit.bench.memory.measure_cpu_memory`),
rebuilds the case (same factory and seed as the timing process), and prints one JSON
line per implementation: ``{"label", "status", "peak_bytes", "method", "error"}``.
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


def main() -> None:
    """Serve one request from stdin."""
    request = json.loads(sys.stdin.read())
    for path in reversed(request.get("sys_path", [])):
        if path not in sys.path:
            sys.path.insert(0, path)
    torch.set_num_threads(int(request["threads"]))
    device = torch.device("cpu")

    def report(label: str, **row: Any) -> None:
        print(json.dumps({"label": label, "method": "subprocess", **row}), flush=True)

    def failure(exc: Exception) -> dict[str, Any]:
        first = (str(exc).splitlines() or [""])[0]
        return {"status": "oom" if is_oom(exc) else "error", "error": f"{type(exc).__name__}: {first}"}

    try:
        spec = _resolve_spec(request["loss"], request.get("module"))
        inputs = draw_inputs(spec, request["size"], dtype=request["dtype"], device=device, seed=int(request["seed"]))
        impls = {i.label: i for i in build_impls(spec, request.get("config"), device)}
    except Exception as exc:  # the whole case fails the same way for every implementation
        for label in request["labels"]:
            report(label, **failure(exc))
        return
    for label in request["labels"]:
        impl = impls[label]
        step = make_step(impl.fn, inputs.args, inputs.kwargs, backward=True, wrt=impl.wrt(inputs))
        try:
            step()  # warm-up
            peak, method = cpu_peak_bytes(step)
            report(label, status="ok", peak_bytes=peak, method=method)
        except Exception as exc:  # reported per implementation, like the timing
            report(label, **failure(exc))
        trim_heap()


if __name__ == "__main__":
    main()
