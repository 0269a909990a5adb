"""GPU benchmark of the token losses against their anchors, side by side in one run.

Cases (bf16, forward + backward):

- ``token_ce`` at N=16384 tokens, V=151936 (Qwen2's vocabulary): losskit ``token_ce``
  (Triton kernel on CUDA), the same with ``in_place=True``, ``F.cross_entropy(logits.float())``
  and Liger-Kernel's ``LigerCrossEntropyLoss`` (when importable);
- ``linear_token_ce`` at N=16384, V=151936, H in {896, 3584}: losskit ``linear_token_ce``,
  ``lm_head + CE`` (``F.cross_entropy((h @ W.T).float())``), Liger's
  ``LigerFusedLinearCrossEntropyLoss`` and Cut Cross-Entropy's ``linear_cross_entropy``
  (each when importable; a missing anchor is skipped with a note in the JSON).

Time: CUDA events around forward + backward, median of 5 after a warm-up (``time.perf_counter``
on CPU). Memory: ``torch.cuda.max_memory_allocated`` above what was allocated before the
call (the inputs), so the returned gradients count for every method alike (None on CPU).

Usage (on the GPU machine; see ../shared/gpu/README.md)::

    python benchmarks/gpu_tokens.py --out benchmarks/results
    python benchmarks/gpu_tokens.py --device cpu --quick --out /tmp/x   # tiny sizes, a smoke test

Writes ``OUT/gpu-tokens-<device>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import losskit

REPS = 5
FULL = {"N": 16384, "V": 151936, "H": (896, 3584)}
QUICK = {"N": 64, "V": 257, "H": (32,)}

Step = Callable[[], torch.Tensor]  # one forward returning the loss (backward is the runner's)


def _optional(module: str, attr: str):
    """``module.attr`` if importable, else None."""
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def _token_methods(n: int, v: int, device: torch.device) -> tuple[dict, dict]:
    """``name -> inputs factory -> step`` for the logits case, and notes on skipped anchors."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    base = (2 * torch.randn(n, v, generator=gen)).to(device, torch.bfloat16)
    labels = torch.randint(0, v, (n,), generator=gen).to(device)
    labels[: n // 4] = -100

    def fresh():  # a new leaf per call: some methods overwrite their logits
        return base.clone().requires_grad_(True)

    ce, ce_in_place = losskit.build("token_ce"), losskit.build("token_ce", in_place=True)
    methods = {
        "losskit token_ce": lambda: (lambda x: lambda: ce(x, labels))(fresh()),
        "losskit token_ce in_place": lambda: (lambda x: lambda: ce_in_place(x, labels))(fresh()),
        "F.cross_entropy(logits.float())": lambda: (lambda x: lambda: F.cross_entropy(x.float(), labels))(fresh()),
    }
    notes = {}
    liger = _optional("liger_kernel.transformers", "LigerCrossEntropyLoss")
    if liger is None or device.type != "cuda":
        notes["liger-kernel"] = "not importable: skipped" if liger is None else "needs CUDA: skipped"
    else:
        fn = liger()
        methods["Liger CrossEntropy"] = lambda: (lambda x: lambda: fn(x, labels))(fresh())
    return methods, notes


def _linear_methods(n: int, v: int, h: int, device: torch.device) -> tuple[dict, dict]:
    """The LM head + CE case at hidden size ``h``."""
    gen = torch.Generator(device="cpu").manual_seed(1)
    hidden = torch.randn(n, h, generator=gen).to(device, torch.bfloat16).requires_grad_(True)
    weight = (torch.randn(v, h, generator=gen) * h**-0.5).to(device, torch.bfloat16).requires_grad_(True)
    labels = torch.randint(0, v, (n,), generator=gen).to(device)
    labels[: n // 4] = -100
    fused = losskit.build("linear_token_ce")

    def fresh(step: Step) -> Callable[[], Step]:  # no gradient left from the run before
        def make() -> Step:
            hidden.grad = weight.grad = None
            return step
        return make

    methods = {
        "losskit linear_token_ce": fresh(lambda: fused(hidden, weight, labels)),
        "lm_head + CE": fresh(lambda: F.cross_entropy((hidden @ weight.T).float(), labels)),
    }
    notes = {}
    liger = _optional("liger_kernel.transformers", "LigerFusedLinearCrossEntropyLoss")
    cce = _optional("cut_cross_entropy", "linear_cross_entropy")
    if liger is None or device.type != "cuda":
        notes["liger-kernel"] = "not importable: skipped" if liger is None else "needs CUDA: skipped"
    else:
        fn = liger()
        methods["Liger FusedLinearCE"] = fresh(lambda: fn(weight, hidden, labels))
    if cce is None or device.type != "cuda":
        notes["cut-cross-entropy"] = "not importable: skipped" if cce is None else "needs CUDA: skipped"
    else:
        methods["Cut Cross-Entropy"] = fresh(lambda: cce(hidden, weight, labels))
    return methods, notes


def _once(step: Step, device: torch.device) -> tuple[float, float | None, float]:
    """One forward + backward: ``(seconds, peak extra MiB or None, loss value)``."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        loss = step()
        loss.backward()
        stop.record()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        return start.elapsed_time(stop) / 1e3, peak, float(loss.detach())
    begin = time.perf_counter()
    loss = step()
    loss.backward()
    return time.perf_counter() - begin, None, float(loss.detach())


def _measure(make: Callable[[], Step], device: torch.device, reps: int) -> dict:
    """Warm-up, then ``reps`` timed runs (fresh inputs each, outside the timing); medians."""
    _once(make(), device)
    runs = [_once(make(), device) for _ in range(reps)]
    peaks = [p for _, p, _ in runs if p is not None]
    return {
        "median_ms": statistics.median(t for t, _, _ in runs) * 1e3,
        "peak_extra_mib": statistics.median(peaks) if peaks else None,
        "loss": runs[-1][2],
    }


def _case(title: str, methods: dict, notes: dict, device: torch.device, reps: int) -> dict:
    results = {}
    for name, make in methods.items():
        results[name] = _measure(make, device, reps)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"case": title, "results": results, "skipped": notes}


def _table(cases: list[dict]) -> str:
    lines = ["| case | method | time (ms) | peak extra (MiB) | loss |", "|---|---|---|---|---|"]
    for case in cases:
        for name, r in case["results"].items():
            peak = "n/a" if r["peak_extra_mib"] is None else f"{r['peak_extra_mib']:.0f}"
            lines.append(f"| {case['case']} | {name} | {r['median_ms']:.2f} | {peak} | {r['loss']:.4f} |")
        for name, note in case["skipped"].items():
            lines.append(f"| {case['case']} | {name} | {note} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu-tokens-<device>.json")
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes {QUICK} (smoke test)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    sizes = QUICK if args.quick else FULL
    n, v = sizes["N"], sizes["V"]
    cases = [_case(f"token_ce N={n} V={v}", *_token_methods(n, v, device), device, REPS)]
    for h in sizes["H"]:
        cases.append(_case(f"linear_token_ce N={n} H={h} V={v}", *_linear_methods(n, v, h, device), device, REPS))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {
        "device": name,
        "torch": torch.__version__,
        "dtype": "bfloat16",
        "sizes": {"N": n, "V": v, "H": list(sizes["H"])},
        "method": f"fwd+bwd, median of {REPS} after a warm-up; CUDA events; peak = max_memory_allocated above the inputs",
        "cases": cases,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    slug = name.lower().replace(" ", "-")
    (args.out / f"gpu-tokens-{slug}.json").write_text(json.dumps(report, indent=2))
    print(_table(cases))
    return report


if __name__ == "__main__":
    main()
