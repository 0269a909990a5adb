"""``clip`` forward+backward against the three-matmul floor and a dense cross-entropy CLIP loss.

Reproduces the README figure (issue 3's target: clip <= 1.6x the floor)::

    python benchmarks/contrastive_clip_dense.py                 # B = 4096, D = 512, fp32, CPU
    python benchmarks/contrastive_clip_dense.py --batch 1024 --rounds 3

Implementations, all on the same ``[B, D]`` fp32 features, differentiated w.r.t. both:

- ``clip``: ``losskit.build("clip")`` (learnable temperature, dense path);
- ``three_matmul_floor``: ``x @ y.T`` in forward, ``S @ y`` and ``S.T @ x`` in backward:
  the three ``B x B x D`` products any exact implementation needs, and nothing else;
- ``dense_ce``: open_clip's straightforward ``ClipLoss`` (two ``F.cross_entropy``).

Timed in alternation (``torch.utils.benchmark``, ``--threads`` torch threads, default 1).
Writes ``benchmarks/results/contrastive_clip_dense.json``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

import losskit
from contrastive_timing import RESULTS, alternate, fwd_bwd, summarize, write
from losskit_plugins.contrastive.baselines import dense_ce_clip, three_matmul_floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads while timing (default 1, torch.utils.benchmark's default: on a shared machine "
        "multi-threaded timings are erratic)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=2.0, help="seconds per blocked_autorange")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory of the JSON results")
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    g = torch.Generator().manual_seed(0)
    img = torch.randn(args.batch, args.dim, generator=g).requires_grad_()
    txt = (img.detach() + torch.randn(args.batch, args.dim, generator=g)).requires_grad_()
    loss = losskit.build("clip", distributed="none")
    torch.testing.assert_close(loss(img, txt), dense_ce_clip(img, txt), rtol=1e-4, atol=1e-4)
    steps = {
        "clip": fwd_bwd(loss, img, txt, params=tuple(loss.parameters())),
        "three_matmul_floor": fwd_bwd(three_matmul_floor, img, txt),
        "dense_ce": fwd_bwd(dense_ce_clip, img, txt),
    }
    medians = alternate(steps, rounds=args.rounds, min_run_time=args.min_run_time, threads=args.threads)
    result = {
        "benchmark": "clip forward+backward vs the three B x B x D matmul floor and a dense cross-entropy CLIP loss",
        "batch": args.batch,
        "dim": args.dim,
        "dtype": "float32",
        "device": "cpu",
        "timer_threads": args.threads,
        "rounds": args.rounds,
        **summarize(medians, {"clip/three_matmul_floor": ("clip", "three_matmul_floor"),
                              "dense_ce/three_matmul_floor": ("dense_ce", "three_matmul_floor"),
                              "clip/dense_ce": ("clip", "dense_ce")}),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    path = write("contrastive_clip_dense", result, load_before=load_before, out_dir=args.out)
    for name, v in result["ratios_median"].items():
        print(f"{name:30s} {v:.3f}")
    print(f"load average {load_before} -> {result['load_average_after']}; wrote {path}")


if __name__ == "__main__":
    main()
