"""Forward+backward time of ``bbox`` (IoU term only) against torchvision's loss, side by side.

Reproduces the performance figure of docs/boxes.md::

    python benchmarks/bbox_iou.py                 # GIoU, N = 1,000,000 boxes, fp32, CPU
    python benchmarks/bbox_iou.py --kind ciou     # CIoU vs complete_box_iou_loss
    python benchmarks/bbox_iou.py --n 100000 --rounds 5

Both implementations get the same valid xyxy boxes (``bbox``'s ``example_inputs``),
differentiate w.r.t. ``pred`` and reduce with a mean (``bbox`` with ``l1_weight: 0``). ``bbox`` runs with its default
input checks (finite coordinates, ordered corners: one device sync). The machine may
be shared: the two are timed in alternation for ``--rounds`` rounds
(``torch.utils.benchmark.Timer.blocked_autorange`` each), and the report gives the
median of the per-round medians and of the per-round ratios, with the load average.
Writes ``benchmarks/results/bbox_<kind>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import torch
import torch.utils.benchmark as tb
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

import losskit

RESULTS = Path(__file__).resolve().parent / "results"
TORCHVISION = {
    "giou": generalized_box_iou_loss,
    "diou": distance_box_iou_loss,
    "ciou": complete_box_iou_loss,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of boxes")
    parser.add_argument("--rounds", type=int, default=7, help="alternating timing rounds")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per blocked_autorange")
    parser.add_argument("--kind", choices=sorted(TORCHVISION), default="giou", help="IoU-family term")
    parser.add_argument("--out", type=Path, default=None, help="results file (default results/bbox_<kind>.json)")
    args = parser.parse_args()
    out = args.out or RESULTS / f"bbox_{args.kind}.json"
    reference = TORCHVISION[args.kind]
    tv_name = f"torchvision.{reference.__name__}"

    spec = losskit.get_spec("bbox")
    inputs = spec.bench.example_inputs(
        {"N": args.n}, dtype=torch.float32, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0)
    )
    pred, target = inputs.args
    loss = losskit.build("bbox", iou_loss=args.kind, l1_weight=0.0)

    def run_bbox() -> None:
        loss(pred, target).backward()
        pred.grad = None

    def run_torchvision() -> None:
        reference(pred, target, reduction="mean").backward()
        pred.grad = None

    torch.testing.assert_close(loss(pred, target), reference(pred, target, reduction="mean"))
    impls = {"bbox": run_bbox, tv_name: run_torchvision}
    medians: dict[str, list[float]] = {k: [] for k in impls}
    ratios: list[float] = []
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for name, fn in impls.items():
            m = tb.Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=args.min_run_time)
            medians[name].append(m.median)
        ratios.append(medians["bbox"][-1] / medians[tv_name][-1])
    result = {
        "benchmark": f"bbox fwd+bwd, iou_loss={args.kind}, l1_weight=0, vs {tv_name}",
        "n_boxes": args.n,
        "dtype": "float32",
        "device": "cpu",
        "rounds": args.rounds,
        "median_seconds": {k: statistics.median(v) for k, v in medians.items()},
        "round_medians_seconds": medians,
        "ratio_bbox_over_torchvision_median": statistics.median(ratios),
        "round_ratios": ratios,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": "python benchmarks/bbox_iou.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"
        ),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, v in result["median_seconds"].items():
        print(f"{name:40s} {v * 1e3:9.2f} ms")
    print(f"ratio bbox / torchvision (median of {args.rounds} rounds): {result['ratio_bbox_over_torchvision_median']:.3f}")
    print(f"load average {result['load_average_before']} -> {result['load_average_after']}; wrote {out}")


if __name__ == "__main__":
    main()
