"""GPU suite part ``boxes_mixture``: ``bbox`` against torchvision, ``mixture`` against its terms by hand.

Cases (forward + backward each; median of 5 timed calls after 2 warm-up calls, CUDA
events on CUDA, ``perf_counter`` on CPU; peak extra memory = ``max_memory_allocated``
above what was allocated before the call, CUDA only):

- ``bbox_giou``: GIoU loss (``l1_weight: 0``, mean over boxes) of N = 10^7 fp32 boxes:
  ``bbox`` (``kernel: auto``, the fused Triton kernel on CUDA), ``bbox`` with
  ``kernel: torch`` and torchvision's ``generalized_box_iou_loss``. Targets (issue 15):
  ``bbox`` time <= 0.5x torchvision, peak memory <= 1.0x.
- ``mixture_<weighting>``: the default mixture (``clip`` + ``token_ce`` + ``bbox``) at the
  bench size ``large``, for ``static``, ``uncertainty`` and ``dwa``, against the same
  three losses called by hand and summed. Target: <= 1.05x.

Run on the GPU machine (see ../shared/gpu/README.md)::

    python benchmarks/gpu_boxes_mixture.py --out RESULTS_DIR
    python benchmarks/gpu_boxes_mixture.py --device cpu --quick --out /tmp/x   # smoke run, tiny sizes

Writes ``RESULTS_DIR/gpu-boxes_mixture-<device>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import losskit

PART = "boxes_mixture"
REPEATS, WARMUP = 5, 2


def measure(fn: Callable[[], None], device: torch.device) -> dict[str, float | None]:
    """Median fwd+bwd milliseconds of ``fn`` and its peak extra memory in MiB (None off CUDA)."""
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(REPEATS):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    peak = None
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return {"ms": statistics.median(times), "peak_mib": peak}


def fwd_bwd(loss: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> Callable[[], None]:
    """A call of ``loss().backward()`` that drops the leaves' gradients afterwards."""

    def run() -> None:
        loss().backward()
        for leaf in leaves:
            leaf.grad = None

    return run


def bbox_case(n: int, device: torch.device, notes: list[str]) -> dict[str, Any]:
    """``bbox`` GIoU (fused and torch paths) against torchvision on ``n`` fp32 boxes."""
    inputs = losskit.get_spec("bbox").bench.example_inputs(
        {"N": n}, dtype=torch.float32, device=device, generator=torch.Generator().manual_seed(0)
    )
    pred, target = inputs.args
    impls: dict[str, Callable[[], torch.Tensor]] = {}
    for kernel in ("auto", "torch"):
        loss = losskit.build("bbox", l1_weight=0.0, kernel=kernel)
        impls[f"bbox[kernel={kernel}]"] = lambda loss=loss: loss(pred, target)
    try:
        from torchvision.ops import generalized_box_iou_loss
    except ImportError as exc:
        notes.append(f"torchvision not importable ({exc}): no anchor for bbox")
    else:
        impls["torchvision.generalized_box_iou_loss"] = lambda: generalized_box_iou_loss(pred, target, reduction="mean")
    values = {name: float(fn().detach()) for name, fn in impls.items()}
    rows = {name: {**measure(fwd_bwd(fn, [pred]), device), "value": values[name]} for name, fn in impls.items()}
    return {"case": "bbox_giou", "n_boxes": n, "dtype": "float32", "impls": rows}


def mixture_case(size: str, weighting: str, device: torch.device) -> dict[str, Any]:
    """The default mixture against its three terms called by hand, at bench size ``size``."""
    from losskit_plugins.mixture.cases import SIZES, example_inputs
    from losskit_plugins.mixture.config import DEFAULT_TERMS

    inputs = example_inputs(SIZES[size], dtype=torch.float32, device=device, generator=torch.Generator().manual_seed(0))
    (by_term,) = inputs.args
    leaves = [t for x in by_term.values() for t in (*x.args, *x.kwargs.values()) if isinstance(t, torch.Tensor) and t.requires_grad]
    mixture = losskit.build({"name": "mixture", "weighting": weighting}).to(device)
    terms = {name: losskit.build(spec).to(device) for name, spec in DEFAULT_TERMS.items()}

    def by_hand() -> torch.Tensor:
        return torch.stack([terms[n](*by_term[n].args, **by_term[n].kwargs) for n in DEFAULT_TERMS]).sum()

    impls = {f"mixture[{weighting}]": lambda: mixture(by_term), "terms_by_hand": by_hand}
    rows = {name: measure(fwd_bwd(fn, leaves), device) for name, fn in impls.items()}
    return {"case": f"mixture_{weighting}", "size": size, "dims": SIZES[size], "dtype": "float32", "impls": rows}


def ratios(cases: list[dict[str, Any]]) -> dict[str, float | None]:
    """The target ratios: bbox (fused) over torchvision in time and memory, mixture over by hand."""
    out: dict[str, float | None] = {}
    for case in cases:
        rows = case["impls"]
        if case["case"] == "bbox_giou" and "torchvision.generalized_box_iou_loss" in rows:
            ours, tv = rows["bbox[kernel=auto]"], rows["torchvision.generalized_box_iou_loss"]
            out["bbox_time_over_torchvision"] = ours["ms"] / tv["ms"]
            out["bbox_memory_over_torchvision"] = None if tv["peak_mib"] is None else ours["peak_mib"] / max(tv["peak_mib"], 1e-9)
        elif case["case"].startswith("mixture_"):
            name = next(k for k in rows if k.startswith("mixture["))
            out[f"{case['case']}_over_by_hand"] = rows[name]["ms"] / rows["terms_by_hand"]["ms"]
    return out


def table(cases: list[dict[str, Any]]) -> str:
    lines = ["| case | implementation | fwd+bwd ms | peak extra MiB |", "|---|---|---|---|"]
    for case in cases:
        for name, row in case["impls"].items():
            peak = "n/a" if row["peak_mib"] is None else f"{row['peak_mib']:.1f}"
            lines.append(f"| {case['case']} | {name} | {row['ms']:.3f} | {peak} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu-boxes_mixture-<device>.json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    notes: list[str] = []
    n = 1000 if args.quick else 10_000_000
    size = "tiny" if args.quick else "large"
    cases = [bbox_case(n, device, notes)]
    cases += [mixture_case(size, weighting, device) for weighting in ("static", "uncertainty", "dwa")]
    result = {
        "part": PART,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "device_type": device.type,
        "quick": args.quick,
        "torch": torch.__version__,
        "repeats": REPEATS,
        "cases": cases,
        "ratios": ratios(cases),
        "notes": notes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-{PART}-{device.type}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(cases))
    print("\n" + "\n".join(f"- {k}: {'n/a' if v is None else f'{v:.3f}'}" for k, v in result["ratios"].items()))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
