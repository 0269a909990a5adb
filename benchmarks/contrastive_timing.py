"""Shared by the contrastive benchmarks: alternating fwd+bwd timing and the results file.

Implementations are timed in alternation for several rounds
(``torch.utils.benchmark.Timer.blocked_autorange`` each), so a burst of load from other
processes hits all of them; the report gives per-implementation medians of the round
medians and medians of the per-round ratios.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.utils.benchmark as tb

from losskit.bench.machine import machine_info

RESULTS = Path(__file__).resolve().parent / "results"


def fwd_bwd(fn: Callable[..., torch.Tensor], *leaves: torch.Tensor, params: tuple[torch.Tensor, ...] = ()) -> Callable[[], None]:
    """A step running ``fn(*leaves).backward()`` and clearing the gradients."""

    def step() -> None:
        fn(*leaves).backward()
        for t in leaves + params:
            t.grad = None

    return step


def alternate(
    steps: Mapping[str, Callable[[], None]], *, rounds: int, min_run_time: float, threads: int
) -> dict[str, list[float]]:
    """Round medians (seconds) of every step, timed in alternation with ``threads`` torch threads."""
    medians: dict[str, list[float]] = {k: [] for k in steps}
    for step in steps.values():  # warm-up (thread pools, allocator)
        step()
    for r in range(rounds):
        for name, step in steps.items():
            timer = tb.Timer(stmt="step()", globals={"step": step}, num_threads=threads)
            m = timer.blocked_autorange(min_run_time=min_run_time)
            medians[name].append(m.median)
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in medians.items()), flush=True)
    return medians


def summarize(medians: Mapping[str, list[float]], ratios: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """Medians per implementation and median per-round ratios ``name: (numerator, denominator)``."""
    return {
        "median_seconds": {k: statistics.median(v) for k, v in medians.items()},
        "round_medians_seconds": dict(medians),
        "ratios_median": {
            name: statistics.median(a / b for a, b in zip(medians[num], medians[den])) for name, (num, den) in ratios.items()
        },
    }


def write(name: str, result: dict[str, Any], *, load_before: list[float] | None, out_dir: Path = RESULTS) -> Path:
    """Write ``<out_dir>/<name>.json`` (default ``benchmarks/results``) with the machine and the command."""
    info = machine_info(torch.device("cpu")).model_dump()
    info["load_average_before"] = load_before
    result = {**result, "machine": info, "command": "python " + " ".join(["benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]])}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
