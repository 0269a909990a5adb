"""GPU benchmark of the contrastive losses (issue 15): the fused Triton kernels side by side with
losskit's PyTorch paths and the anchors, in one run.

Cases (``--quick``: tiny sizes, for a CPU smoke run):

- ``clip`` fp32 and bf16, B in {16384, 65536}, D = 768: losskit fused (``kernel="triton"``), dense
  (``kernel="torch"``, one tile) and tiled PyTorch (``chunk_size=4096``); open_clip ``ClipLoss`` and
  Inf-CL's flash loss (called in both directions), where importable;
- bf16, B = 4096, D = 512: ``clip`` and ``siglip`` against open_clip's losses, ``infonce`` against a
  bare implementation (``F.cross_entropy`` of the ``[B, B]`` logits).

Each implementation is timed forward + backward with CUDA events (median of 5 after 2
warm-up runs; wall clock on CPU); its peak extra memory is ``torch.cuda.max_memory_allocated``
above what was allocated before the call (``null`` on CPU). The fused rows also report their
relative error against losskit's dense PyTorch path (loss and feature gradients), so a GPU
run checks the kernels too. Writes ``OUT/gpu-contrastive-<device>.json`` and prints a
markdown table. Missing anchors are skipped with a note in the JSON.

    python benchmarks/gpu_contrastive.py --out DIR [--quick] [--device cuda|cpu]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import losskit
from losskit.bench.machine import machine_info
from losskit.kernels import use_triton
from losskit_plugins.contrastive.baselines import info_nce_reference, open_clip_available, open_clip_clip, open_clip_siglip

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

TARGETS = [
    "fused clip fp32/bf16, B in {16384, 65536}, D=768: time <= 1.0x losskit dense and <= 0.5x open_clip ClipLoss; "
    "peak extra memory <= Inf-CL (flash loss, both directions)",
    "bf16 B=4096 D=512: clip and siglip <= 1.1x open_clip; infonce <= 1.1x a bare implementation",
]


def _losskit(name: str, **cfg: object) -> Step:
    loss = losskit.build(name, distributed="none", **cfg)
    return lambda a, b: loss.to(a.device)(a, b)


def _inf_cl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from inf_cl import cal_flash_loss  # optional anchor

    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    head = min(256, a.shape[1])
    return (cal_flash_loss(a, b, scale=1 / 0.07, head_dim=head).mean() + cal_flash_loss(b, a, scale=1 / 0.07, head_dim=head).mean()) / 2


def _bare_infonce(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return info_nce_reference(a, b)


def _anchors(device: torch.device) -> tuple[dict[str, Step], dict[str, str]]:
    """Importable anchors and the reasons the others are skipped."""
    have, skipped = {}, {}
    if open_clip_available():
        have["open_clip ClipLoss"], have["open_clip SigLipLoss"] = open_clip_clip, open_clip_siglip
    else:
        skipped["open_clip"] = "open_clip is not installed"
    if importlib.util.find_spec("inf_cl") is None:
        skipped["Inf-CL"] = "inf_cl is not installed"
    elif device.type != "cuda":
        skipped["Inf-CL"] = "Inf-CL's kernels need CUDA"
    else:
        have["Inf-CL flash (both directions)"] = _inf_cl
    return have, skipped


def _cases(quick: bool, anchors: dict[str, Step]) -> list[dict]:
    """``{"case", "loss", "dtype", "B", "D", "impls": {name: step}}`` per measured shape."""
    big, chunk = ((64, 200), 64) if quick else ((16384, 65536), 4096)
    d_big, b_small, d_small = (32, 128, 32) if quick else (768, 4096, 512)
    cases = []
    for dtype in (torch.float32, torch.bfloat16):
        for B in big:
            impls = {
                "losskit fused": _losskit("clip", kernel="auto"),
                "losskit dense": _losskit("clip", kernel="torch"),
                f"losskit tiled torch ({chunk})": _losskit("clip", kernel="torch", chunk_size=chunk),
            }
            impls.update({k: v for k, v in anchors.items() if k in ("open_clip ClipLoss", "Inf-CL flash (both directions)")})
            cases.append({"case": "clip at scale", "loss": "clip", "dtype": dtype, "B": B, "D": d_big, "impls": impls})
    small = {
        "clip": {"open_clip ClipLoss": anchors.get("open_clip ClipLoss")},
        "siglip": {"open_clip SigLipLoss": anchors.get("open_clip SigLipLoss")},
        "infonce": {"bare infonce (F.cross_entropy)": _bare_infonce},
    }
    for name, refs in small.items():
        impls = {"losskit fused": _losskit(name, kernel="auto"), "losskit dense": _losskit(name, kernel="torch")}
        impls.update({k: v for k, v in refs.items() if v is not None})
        cases.append({"case": "everyday", "loss": name, "dtype": torch.bfloat16, "B": b_small, "D": d_small, "impls": impls})
    return cases


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(step: Step, a: torch.Tensor, b: torch.Tensor, reps: int) -> tuple[float, float | None, list[torch.Tensor]]:
    """(median ms of fwd+bwd, peak extra MiB or None, [loss, grad a, grad b] of the last run)."""
    device = a.device

    def once() -> list[torch.Tensor]:
        a.grad = b.grad = None
        loss = step(a, b)
        loss.backward()
        return [loss.detach(), a.grad, b.grad]

    for _ in range(2):
        once()
    _sync(device)
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        once()
        _sync(device)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = once()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            out = once()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), peak, out


def _rel(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    return max(float((g.float() - w.float()).norm() / w.float().norm().clamp_min(1e-30)) for g, w in zip(got, want))


def run_case(case: dict, device: torch.device, reps: int) -> list[dict]:
    """Measure every implementation of one case; rows of the results table."""
    g = torch.Generator(device=device).manual_seed(0)
    B, D, dtype = case["B"], case["D"], case["dtype"]
    a = torch.randn(B, D, device=device, dtype=dtype, generator=g).requires_grad_()
    b = (a.detach() + torch.randn(B, D, device=device, dtype=dtype, generator=g)).requires_grad_()
    rows, outputs = [], {}
    for name, step in case["impls"].items():
        row = {k: case[k] for k in ("case", "loss", "B", "D")} | {"dtype": str(dtype).removeprefix("torch."), "impl": name}
        if name == "losskit fused":
            row["path"] = "triton" if use_triton("auto", device) else "torch (no CUDA: kernel='auto' runs PyTorch)"
        try:
            ms, peak, outputs[name] = _measure(step, a, b, reps)
            row |= {"ms": round(ms, 3), "peak_extra_mib": None if peak is None else round(peak, 1)}
        except torch.OutOfMemoryError as e:
            row |= {"ms": None, "peak_extra_mib": None, "note": f"out of memory: {str(e)[:120]}"}
            torch.cuda.empty_cache()
        rows.append(row)
    if "losskit fused" in outputs and "losskit dense" in outputs:
        rows[0]["rel_err_vs_dense"] = _rel(outputs["losskit fused"], outputs["losskit dense"])
    return rows


def _table(rows: list[dict]) -> str:
    lines = ["| case | loss | dtype | B | D | impl | ms | peak extra MiB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ms = "–" if r["ms"] is None else f"{r['ms']:.2f}"
        peak = "–" if r["peak_extra_mib"] is None else f"{r['peak_extra_mib']:.0f}"
        lines.append(f"| {r['case']} | {r['loss']} | {r['dtype']} | {r['B']} | {r['D']} | {r['impl']} | {ms} | {peak} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="directory of the JSON results")
    p.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke run)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--reps", type=int, default=5, help="timed runs per implementation (median)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    anchors, skipped = _anchors(device)
    rows = []
    for case in _cases(args.quick, anchors):
        rows += run_case(case, device, args.reps)
        print(_table(rows[-len(case["impls"]):]).splitlines()[-1], flush=True)
    info = machine_info(device)
    result = {
        "part": "contrastive",
        "device": info.device_name,
        "machine": info.model_dump(),
        "triton": importlib.util.find_spec("triton") is not None,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "quick": args.quick,
        "rows": rows,
        "skipped": skipped,
        "targets": TARGETS,
        "command": "python benchmarks/gpu_contrastive.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-contrastive-{device.type}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(_table(rows))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
