"""Time and peak memory of ``token_ce`` / ``linear_token_ce`` against their baselines (fp32 CPU).

- peak extra memory: one forward + backward per method, each in a fresh subprocess (so
  one method's allocations cannot hide another's peak): ``VmHWM - VmRSS``
  (``/proc/self/status``; the high-water mark is reset through ``/proc/self/clear_refs``
  just before the call), minus the gradient buffers every implementation must return
  (``grad`` of the logits for ``token_ce``; of ``hidden`` and ``weight`` for
  ``linear_token_ce``);
- time: forward + backward with ``torch.utils.benchmark``, all methods in one
  subprocess on the same inputs after a full-size warm-up, alternating ``--reps`` times
  (side by side under the same machine load); medians.

Usage (writes ``benchmarks/results/token_<suite>.json``)::

    python benchmarks/token_ce_bench.py --suite ce --reps 5
    python benchmarks/token_ce_bench.py --suite linear_ce --reps 5

Defaults: N = 2048 tokens, H = 896, V = 151936 (Qwen2-0.5B's LM head).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SUITES = {
    "ce": ["token_ce", "transformers_style", "F.cross_entropy"],
    "linear_ce": ["linear_token_ce", "transformers_style", "three_matmul_floor"],
}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _setup(suite: str, n: int, h: int, v: int):
    """The suite's spec, its input factory at the measured size, and a fwd + bwd step per method."""
    import torch

    import losskit

    name = SUITES[suite][0]
    spec = losskit.get_spec(name)

    def inputs(size):
        return spec.bench.example_inputs(size, dtype=torch.float32, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))

    def stepper(method: str):
        fn = losskit.build(name) if method == name else spec.bench.baselines[method]

        def step(args):
            for t in args:
                if t.is_floating_point():
                    t.grad = None
            fn(*args).backward()

        return step

    size = {"B": 1, "T": n, "V": v} | ({"H": h} if suite == "linear_ce" else {})
    return inputs, stepper, size


def _memory(suite: str, method: str, n: int, h: int, v: int) -> dict:
    """Run in a fresh subprocess: warm up, then one forward + backward with its peak RSS (and time)."""
    import torch
    from torch.utils import benchmark

    inputs, stepper, size = _setup(suite, n, h, v)
    step = stepper(method)
    step(inputs({k: min(x, 64) for k, x in size.items()}).args)  # warm-up: library init, same path
    args = inputs(size).args
    grads = [t for t in args if t.is_floating_point() and t.requires_grad]
    grad_bytes = sum(t.numel() * t.element_size() for t in grads)
    rss0 = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    timer = benchmark.Timer("step(args)", globals={"step": step, "args": args}, num_threads=torch.get_num_threads())
    seconds = timer.timeit(1).median
    peak = _status_kb("VmHWM")
    return {
        "first_call_seconds": seconds,
        "peak_extra_mb": ((peak - rss0) * 1024 - grad_bytes) / 2**20,
        "grad_buffers_mb": grad_bytes / 2**20,
    }


def _times(suite: str, reps: int, n: int, h: int, v: int) -> dict:
    """Run in one subprocess: the methods alternate on the same inputs, ``reps`` timed calls each."""
    import torch
    from torch.utils import benchmark

    inputs, stepper, size = _setup(suite, n, h, v)
    args = inputs(size).args
    steps = {m: stepper(m) for m in SUITES[suite]}
    for step in steps.values():
        step(args)  # warm-up at full size
    times: dict[str, list[float]] = {m: [] for m in steps}
    for _ in range(reps):
        for m, step in steps.items():
            timer = benchmark.Timer("step(args)", globals={"step": step, "args": args}, num_threads=torch.get_num_threads())
            times[m].append(timer.timeit(1).median)
    return times


def _sub(suite: str, extra: list[str], a: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--suite", suite, *extra,
           "--tokens", str(a.tokens), "--hidden", str(a.hidden), "--vocab", str(a.vocab)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="ce")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=896)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: memory of one method, as JSON
    parser.add_argument("--time-all", action="store_true", help=argparse.SUPPRESS)  # internal: timings, as JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_memory(args.suite, args.one, args.tokens, args.hidden, args.vocab)))
        return
    if args.time_all:
        print(json.dumps(_times(args.suite, args.reps, args.tokens, args.hidden, args.vocab)))
        return
    load_before = os.getloadavg()
    memory = {m: _sub(args.suite, ["--one", m], args) for m in SUITES[args.suite]}
    print(f"memory: {memory}", flush=True)
    times = _sub(args.suite, ["--time-all", "--reps", str(args.reps)], args)
    print(f"times: {times}", flush=True)
    summary = {
        m: {
            "median_seconds": statistics.median(times[m]),
            "seconds": times[m],
            "median_peak_extra_mb": memory[m]["peak_extra_mb"],
            "memory_run": memory[m],
        }
        for m in SUITES[args.suite]
    }
    ours, base = SUITES[args.suite][0], SUITES[args.suite][1:]
    ratios = {
        f"{ours}/{b}": {
            "time": summary[ours]["median_seconds"] / summary[b]["median_seconds"],
            "peak_extra_memory": summary[ours]["median_peak_extra_mb"] / summary[b]["median_peak_extra_mb"],
        }
        for b in base
    }
    import torch

    result = {
        "suite": args.suite,
        "shape": {"N": args.tokens, "V": args.vocab} | ({"H": args.hidden} if args.suite == "linear_ce" else {}),
        "dtype": "float32",
        "device": "cpu",
        "memory_method": "VmHWM - VmRSS around one fwd+bwd in a fresh subprocess per method, minus the gradient buffers",
        "time_method": "one subprocess, methods alternating on the same inputs after a full-size warm-up; median of reps",
        "ratios": ratios,
        "summary": summary,
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = Path(__file__).parent / "results" / f"token_{args.suite}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(ratios, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
