"""Time and peak memory of ``token_ce`` / ``linear_token_ce`` against their baselines (fp32 CPU).

Each measurement runs in a fresh subprocess (so one case's allocations cannot hide
another's peak); the cases of one repeat run one after another, repeats interleave,
and medians are reported. Per case and repeat:

- time: one forward + backward at the given size, timed with ``torch.utils.benchmark``
  after a warm-up on a tiny problem of the same code path;
- peak extra memory: ``VmHWM - VmRSS`` of the subprocess (``/proc/self/status``; the
  high-water mark is reset through ``/proc/self/clear_refs`` just before the call), minus
  the gradient buffers every implementation must return (``grad`` of the logits for
  ``token_ce``; of ``hidden`` and ``weight`` for ``linear_token_ce``).

Usage (writes ``benchmarks/results/token_<suite>.json``)::

    python benchmarks/token_ce_bench.py --suite ce --reps 5
    python benchmarks/token_ce_bench.py --suite linear_ce --reps 3

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
    "linear_ce": ["linear_token_ce", "transformers_style"],
}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measure(suite: str, method: str, n: int, h: int, v: int) -> dict:
    """Run in the subprocess: warm up, then one timed and memory-tracked forward + backward."""
    import torch
    from torch.utils import benchmark

    import losskit

    name = SUITES[suite][0]
    spec = losskit.get_spec(name)
    fn = losskit.build(name) if method == name else spec.baselines[method]

    def inputs(size):
        return spec.example_inputs(size, dtype=torch.float32, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))

    def step(args):
        for t in args:
            t.grad = None if t.is_floating_point() else t.grad
        fn(*args).backward()

    size = {"B": 1, "T": n, "V": v} | ({"H": h} if suite == "linear_ce" else {})
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
        "seconds": seconds,
        "peak_extra_mb": ((peak - rss0) * 1024 - grad_bytes) / 2**20,
        "grad_buffers_mb": grad_bytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="ce")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=896)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one method and print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_measure(args.suite, args.one, args.tokens, args.hidden, args.vocab)))
        return
    runs: dict[str, list[dict]] = {m: [] for m in SUITES[args.suite]}
    load_before = os.getloadavg()
    for rep in range(args.reps):
        for method in SUITES[args.suite]:
            cmd = [sys.executable, __file__, "--suite", args.suite, "--one", method,
                   "--tokens", str(args.tokens), "--hidden", str(args.hidden), "--vocab", str(args.vocab)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[method].append(json.loads(out.strip().splitlines()[-1]))
            print(f"rep {rep} {method}: {runs[method][-1]}", flush=True)
    summary = {
        m: {
            "median_seconds": statistics.median(r["seconds"] for r in rs),
            "median_peak_extra_mb": statistics.median(r["peak_extra_mb"] for r in rs),
            "runs": rs,
        }
        for m, rs in runs.items()
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
        "memory_method": "VmHWM - VmRSS of a fresh subprocess per measurement, minus the gradient buffers",
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
