"""Timing of one zero-argument callable: median and interquartile range after warm-up.

Uses :class:`torch.utils.benchmark.Timer`, whose default timer synchronises the
accelerator (``torch.cuda.synchronize`` on CUDA) before reading the clock, so GPU
times cover the kernels and not just their launch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from losskit.bench.results import Timing


def _import_timer() -> type:
    # torch.utils.benchmark imports torch.utils.cpp_extension, which logs "No CUDA runtime is
    # found, using CUDA_HOME=..." on a machine with a CUDA toolkit but no GPU: noise on CPU runs.
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils.benchmark import Timer
    finally:
        logger.setLevel(level)
    return Timer


Timer = _import_timer()

__all__ = ["check_min_run_time", "make_step", "time_callable", "timing_from_times"]


def make_step(
    fn: Callable[..., Tensor],
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    backward: bool,
    wrt: Sequence[Tensor] | None = None,
) -> Callable[[], Any]:
    """A zero-argument callable running ``fn(*args, **kwargs)`` and, with ``backward``, its gradient.

    With ``wrt`` the backward pass is ``torch.autograd.grad(out, wrt,
    grad_outputs=ones_like(out))``: gradients are returned, not accumulated into
    ``.grad``, so repeated calls cost the same. Without ``wrt`` it is
    ``out.backward(ones_like(out))`` (gradients accumulate in the leaves' ``.grad``).
    A non-scalar output (``reduction="none"``) is back-propagated with a ones seed.
    """
    kwargs = kwargs or {}
    if not backward:
        return lambda: fn(*args, **kwargs)
    targets = tuple(wrt) if wrt is not None else None

    def step() -> Any:
        out = fn(*args, **kwargs)
        if targets is None:
            return out.backward(torch.ones_like(out))
        return torch.autograd.grad(out, targets, grad_outputs=torch.ones_like(out), allow_unused=True)

    return step


def check_min_run_time(min_run_time: float) -> None:
    """Reject a ``min_run_time`` that is not a finite number of seconds >= 0 (0: one call per measurement)."""
    if isinstance(min_run_time, bool) or not isinstance(min_run_time, (int, float)) or not 0 <= min_run_time < math.inf:
        raise ValueError(f"min_run_time: expected a finite number of seconds >= 0, got {min_run_time!r}")


def timing_from_times(times: Sequence[float], *, number: int, warmup: int) -> Timing:
    """A :class:`Timing` (median, IQR) from per-call times."""
    arr = np.asarray(times, dtype=np.float64)
    q25, q50, q75 = np.percentile(arr, [25, 50, 75])
    return Timing(median_s=float(q50), iqr_s=float(q75 - q25), times_s=[float(t) for t in arr], number=number, warmup=warmup)


def time_callable(
    fn: Callable[[], Any],
    *,
    backward: bool = False,
    wrt: Sequence[Tensor] | None = None,
    repeat: int = 5,
    warmup: int = 2,
    min_run_time: float = 0.05,
    device: torch.device | str | None = None,
    num_threads: int | None = None,
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeat`` measurements.

    Each measurement runs ``fn`` ``number`` times, with ``number`` chosen from one
    calibration call so that a measurement lasts about ``min_run_time`` seconds
    (at least one call); ``Timer.timeit`` adds its own ``max(number // 100, 2)``
    untimed calls before each measurement. The result holds the per-call time of every measurement,
    their median and interquartile range.

    Args:
        fn: zero-argument callable, e.g. ``lambda: loss(x, y)``.
        backward: time ``fn()`` plus the backward pass of its (tensor) result, see
            :func:`make_step`; ``False`` times ``fn()`` alone.
        wrt: tensors to differentiate with ``backward`` (default: ``out.backward()``).
        repeat: number of measurements (>= 1).
        warmup: untimed calls first (lazy initialisation, allocator and autotuning).
        min_run_time: target seconds per measurement.
        device: where ``fn`` runs; CUDA work is synchronised before every clock read
            (``torch.utils.benchmark.Timer`` does it for any accelerator), and
            ``torch.cuda.synchronize(device)`` runs after the warm-up.
        num_threads: intra-op threads while timing; default ``torch.get_num_threads()``
            (``Timer`` itself would default to 1).

    Returns:
        :class:`~losskit.bench.results.Timing`, in seconds per call.
    """
    if repeat < 1:
        raise ValueError(f"repeat: expected >= 1, got {repeat}")
    if warmup < 0:
        raise ValueError(f"warmup: expected >= 0, got {warmup}")
    check_min_run_time(min_run_time)
    if backward:
        fn = make_step(fn, backward=True, wrt=wrt)
    for _ in range(warmup):
        fn()
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        torch.cuda.synchronize(dev)
    threads = num_threads if num_threads is not None else torch.get_num_threads()
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    once = timer.timeit(1).mean
    number = max(1, math.ceil(min_run_time / once)) if once > 0 else 1
    times = [timer.timeit(number).mean for _ in range(repeat)]
    return timing_from_times(times, number=number, warmup=warmup)
