"""Tiled ``clip`` (``chunk_size``) against a dense cross-entropy CLIP loss: time and peak memory.

Reproduces the README/docs figures of issue 4 (targets at B = 16384, D = 512, fp32 CPU:
tiled peak extra memory <= 5% of the dense loss's, time <= 1.0x)::

    python benchmarks/contrastive_clip_tiled.py                          # B = 16384 + the sweep for the plot
    python benchmarks/contrastive_clip_tiled.py --batches 1024 2048 --rounds 1

- ``tiled``: ``losskit.build("clip", chunk_size=--chunk)`` (learnable temperature);
- ``dense_ce``: open_clip's straightforward ``ClipLoss`` (two ``F.cross_entropy``).

Time: forward+backward, the two timed in alternation (``torch.utils.benchmark``, ``--threads``
torch threads, default 1),
``--rounds`` rounds at the largest batch, one round at the others. Peak memory: each
implementation of each batch in a fresh subprocess (``losskit.bench.memory``: Linux
``VmHWM`` reset through ``/proc/self/clear_refs``, minus ``VmRSS`` before the step,
after a warm-up step; glibc returns freed memory). Writes
``benchmarks/results/contrastive_clip_tiled.json`` and the plot
``benchmarks/results/contrastive_clip_tiled.png`` (copied to ``docs/img/``).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import losskit  # noqa: E402
from contrastive_timing import RESULTS, alternate, fwd_bwd, summarize, write  # noqa: E402
from losskit.bench.memory import measure_cpu_memory  # noqa: E402
from losskit_plugins.contrastive.baselines import dense_ce_clip  # noqa: E402

DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img" / "contrastive_clip_tiled.png"


def _memory(batch: int, dim: int, chunk: int) -> dict[str, dict]:
    base = {"loss": "contrastive:clip", "module": None, "size": {"B": batch, "D": dim}, "dtype": "fp32", "seed": 0,
            "threads": torch.get_num_threads()}
    jobs = [{**base, "config": {"chunk_size": chunk, "distributed": "none"}, "label": "losskit"},
            {**base, "config": {"distributed": "none"}, "label": "dense_ce"}]
    tiled, dense = measure_cpu_memory(jobs, timeout=1800)
    return {"tiled": tiled.model_dump(), "dense_ce": dense.model_dump()}


def _time(batch: int, dim: int, chunk: int, rounds: int, min_run_time: float, threads: int) -> dict[str, list[float]]:
    g = torch.Generator().manual_seed(0)
    img = torch.randn(batch, dim, generator=g).requires_grad_()
    txt = (img.detach() + torch.randn(batch, dim, generator=g)).requires_grad_()
    tiled = losskit.build("clip", chunk_size=chunk, distributed="none")
    steps = {"tiled": fwd_bwd(tiled, img, txt, params=tuple(tiled.parameters())), "dense_ce": fwd_bwd(dense_ce_clip, img, txt)}
    return alternate(steps, rounds=rounds, min_run_time=min_run_time, threads=threads)


def _plot(sweep: list[dict], path: Path) -> None:
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    batches = [row["batch"] for row in sweep]
    for impl, style in (("tiled", "o-"), ("dense_ce", "s--")):
        ax_t.plot(batches, [row["median_seconds"][impl] for row in sweep], style, label=impl)
        ax_m.plot(batches, [row["memory"][impl]["peak_bytes"] / 2**20 for row in sweep], style, label=impl)
    for ax, label in ((ax_t, "forward+backward time (s)"), (ax_m, "peak extra memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size B (D = 512, fp32, CPU)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("clip: tiled (chunk_size) vs dense cross-entropy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads while timing (default 1, torch.utils.benchmark's default: on a shared machine "
        "multi-threaded timings are erratic)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds at the largest batch")
    parser.add_argument("--min-run-time", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory of the JSON and PNG (docs/img/ gets a copy only for the default)")
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    sweep = []
    for batch in sorted(args.batches):
        rounds = args.rounds if batch == max(args.batches) else 1
        medians = _time(batch, args.dim, args.chunk, rounds, args.min_run_time, args.threads)
        row = {"batch": batch, **summarize(medians, {"tiled/dense_ce": ("tiled", "dense_ce")}), "memory": _memory(batch, args.dim, args.chunk)}
        mem = row["memory"]
        if mem["tiled"]["status"] == "ok" and mem["dense_ce"]["status"] == "ok":
            row["memory_ratio_tiled/dense_ce"] = mem["tiled"]["peak_bytes"] / mem["dense_ce"]["peak_bytes"]
        print(f"B={batch}: time ratio {row['ratios_median']['tiled/dense_ce']:.3f}, memory "
              + ", ".join(f"{k} {(v.get('peak_bytes') or 0) / 2**20:.0f}" for k, v in mem.items())
              + f" MiB, ratio {row.get('memory_ratio_tiled/dense_ce')}", flush=True)
        sweep.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "contrastive_clip_tiled.png"
    _plot(sweep, png)
    if args.out == RESULTS:
        DOCS_IMG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, DOCS_IMG)
    result = {
        "benchmark": "tiled clip (chunk_size) vs dense cross-entropy CLIP loss, forward+backward",
        "dim": args.dim,
        "chunk_size": args.chunk,
        "dtype": "float32",
        "device": "cpu",
        "timer_threads": args.threads,
        "memory_method": "fresh subprocess per implementation and batch: peak RSS (VmHWM after clear_refs) minus RSS before the step (losskit.bench.memory)",
        "sweep": sweep,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    path = write("contrastive_clip_tiled", result, load_before=load_before, out_dir=args.out)
    print(f"load average {load_before} -> {result['load_average_after']}; wrote {path} and {png}")


if __name__ == "__main__":
    main()
