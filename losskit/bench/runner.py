"""Run benchmark cases: the loss and its baselines on the same inputs, in one run."""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from losskit.bench.cases import (
    DTYPES,
    bench_of,
    Impl,
    build_impls,
    check_size_keys,
    config_json,
    draw_inputs,
    is_oom,
    resolve_device,
    resolve_size,
    throughput_keys,
)
from losskit.bench.memory import CUDA_METHOD, cuda_peak_bytes, measure_cpu_memory
from losskit.bench.progress import progress_bar
from losskit.bench.results import CaseResult, ImplResult, MemoryResult, Ratios
from losskit.bench.timing import check_min_run_time, make_step, time_callable
from losskit.registry import get_spec
from losskit.spec import Inputs, LossSpec

__all__ = ["add_cpu_memory", "run_case", "run_cases"]


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"


def _failed(label: str, exc: BaseException) -> ImplResult:
    return ImplResult(impl=label, status="oom" if is_oom(exc) else "error", error=_first_line(exc))


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _time_impl(
    impl: Impl, inputs: Inputs, *, device: torch.device, repeat: int, warmup: int, min_run_time: float, memory: bool
) -> ImplResult:
    fwd = make_step(impl.fn, inputs.args, inputs.kwargs, backward=False)
    fwd_bwd = make_step(impl.fn, inputs.args, inputs.kwargs, backward=True, wrt=impl.wrt(inputs))
    try:
        t_fwd = time_callable(fwd, repeat=repeat, warmup=warmup, min_run_time=min_run_time, device=device)
        t_fb = time_callable(fwd_bwd, repeat=repeat, warmup=warmup, min_run_time=min_run_time, device=device)
        mem = None
        if memory and device.type == "cuda":
            mem = MemoryResult(status="ok", peak_bytes=cuda_peak_bytes(fwd_bwd, device), method=CUDA_METHOD)
    except Exception as exc:  # OOM or a broken implementation: reported in its row, the run goes on
        failed = _failed(impl.label, exc)
    else:
        return ImplResult(impl=impl.label, status="ok", forward=t_fwd, forward_backward=t_fb, memory=mem)
    _free(device)  # outside the except block: the traceback no longer pins the tensors
    return failed


def _time_impls(
    spec: LossSpec,
    impls: list[Impl],
    dims: dict[str, int],
    *,
    dtype: str,
    seed: int,
    notify: Callable[[str], None],
    **timing: Any,
) -> list[ImplResult]:
    """Draw the case's inputs once and time every implementation on them (see :func:`_time_impl`)."""
    try:
        inputs = draw_inputs(spec, dims, dtype=dtype, device=timing["device"], seed=seed)
    except Exception as exc:  # the inputs do not fit: every implementation is OOM (or broken)
        rows = [_failed(i.label, exc) for i in impls]
        for i in impls:
            notify(f"{spec.name} {i.label}")
        return rows
    rows = []
    for impl in impls:
        rows.append(_time_impl(impl, inputs, **timing))
        notify(f"{spec.name} {impl.label}")
    return rows


def _ratio(a: float | int | None, b: float | int | None) -> float | None:
    return a / b if a is not None and b else None


def _medians(r: ImplResult) -> tuple[float | None, float | None, int | None]:
    return (
        r.forward.median_s if r.forward else None,
        r.forward_backward.median_s if r.forward_backward else None,
        r.memory.peak_bytes if r.memory else None,
    )


def _ratios(case: list[ImplResult]) -> dict[str, Ratios]:
    """losskit / baseline for every baseline that ran, when the loss itself ran."""
    main = case[0]
    if main.status != "ok":
        return {}
    ours = _medians(main)
    out = {}
    for other in case[1:]:
        if other.status == "ok":
            fwd, fwd_bwd, mem = (_ratio(a, b) for a, b in zip(ours, _medians(other)))
            out[other.impl] = Ratios(forward=fwd, forward_backward=fwd_bwd, memory=mem)
    return out


def _check_args(dtype: str, repeat: int, warmup: int, min_run_time: float) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    if repeat < 1:
        raise ValueError(f"repeat: expected >= 1, got {repeat}")
    if warmup < 0:
        raise ValueError(f"warmup: expected >= 0, got {warmup}")
    check_min_run_time(min_run_time)


def run_case(
    name: str,
    *,
    size: str | Mapping[str, int] = "small",
    config: Mapping[str, Any] | None = None,
    dtype: str = "fp32",
    device: str | torch.device = "cpu",
    repeat: int = 5,
    warmup: int = 2,
    min_run_time: float = 0.05,
    memory: bool = True,
    baselines: bool = True,
    seed: int = 0,
    memory_timeout: float | None = 1800.0,
    strict_size: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> CaseResult:
    """Benchmark one registered loss and its baselines on the same inputs.

    For the loss and each baseline of its spec: forward time and forward+backward
    time (median and IQR of ``repeat`` measurements after ``warmup`` calls, see
    :func:`~losskit.bench.time_callable`), peak extra memory of one forward+backward
    (CUDA: ``max_memory_allocated``; CPU: RSS peak in an isolated process, see
    :mod:`losskit.bench.memory`), throughput (items per second of forward+backward:
    the product of the spec's ``throughput_keys``, by default the ``B`` or ``N`` size) and the ratios losskit / baseline.

    Forward is timed with autograd recording (as in training). Backward
    differentiates the inputs that ``requires_grad`` plus the loss's own parameters.

    Args:
        name: loss name, short or ``plugin:loss``.
        size: a preset (``"small"``), ``"B=512,D=128"`` (overrides on ``small``),
            ``"medium,B=512"``, or a full mapping ``{"B": 512, "D": 128}``.
        config: loss config fields (without ``name``); defaults when None.
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"`` inputs.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        repeat: measurements per timing.
        warmup: untimed calls before timing.
        min_run_time: seconds per measurement (sets the calls per measurement).
        memory: measure peak memory (CPU: one child process per call; :func:`run_cases`
            measures all its cases in one).
        baselines: also time the spec's baselines.
        seed: seed of the input generator.
        memory_timeout: seconds before the CPU memory process is abandoned.
        strict_size: reject ``size`` override keys this loss does not have
            (:func:`run_cases` checks them against all its losses instead).
        on_step: called with a short description after each implementation is timed (progress).

    Returns:
        :class:`~losskit.bench.results.CaseResult`; an implementation that ran out of
        memory has status ``"oom"``, one that raised has ``"error"`` (never raised here).

    Raises:
        UnknownLossError: no such loss.
        ValueError: bad size, dtype, repeat, warmup, min_run_time or device (e.g. CUDA not available).
        ConfigError: ``config`` does not validate.
    """
    _check_args(dtype, repeat, warmup, min_run_time)
    spec = get_spec(name)
    if strict_size and isinstance(size, str):
        check_size_keys([spec], size)
    dev = resolve_device(device)
    size_label, dims = resolve_size(spec, size)
    cfg = config_json(config, spec)
    impls = build_impls(spec, config, dev, baselines=baselines)
    timing = {"device": dev, "repeat": repeat, "warmup": warmup, "min_run_time": min_run_time, "memory": memory}
    rows = _time_impls(spec, impls, dims, dtype=dtype, seed=seed, notify=on_step or (lambda _msg: None), **timing)
    _free(dev)
    keys = throughput_keys(spec, dims)
    rows = [_with_throughput(r, math.prod(dims[k] for k in keys) if keys else None) for r in rows]
    case = CaseResult(
        loss=name,
        qualified_name=spec.qualified_name,
        config=cfg,
        size_label=size_label,
        size=dims,
        throughput_keys=list(keys) if keys else None,
        throughput_unit=bench_of(spec).throughput_unit,
        dtype=dtype,  # type: ignore[arg-type]
        device=str(dev),
        seed=seed,
        status=rows[0].status,
        impls=rows,
        ratios=_ratios(rows),
    )
    if memory and dev.type == "cpu":
        (case,) = add_cpu_memory([case], timeout=memory_timeout)
    return case


def add_cpu_memory(cases: Sequence[CaseResult], *, timeout: float | None = 1800.0) -> list[CaseResult]:
    """Measure the CPU peak memory of every implementation that ran, in one isolated child process.

    The child rebuilds each case from its recorded loss, config, size, dtype and seed
    (see :mod:`losskit.bench.memory`). An OOM there turns the row into ``oom``; the
    ratios are recomputed with the memory. Cases run on CUDA are returned unchanged
    (their memory is measured while timing).
    """
    jobs, where = [], []
    for c, case in enumerate(cases):
        if case.device != "cpu":
            continue
        module = get_spec(case.qualified_name).loss_class.__module__
        base = {"loss": case.qualified_name, "module": module, "config": case.config, "size": case.size}
        base.update(dtype=case.dtype, seed=case.seed, threads=torch.get_num_threads())
        for r, row in enumerate(case.impls):
            if row.status == "ok":
                jobs.append({**base, "label": row.impl})
                where.append((c, r))
    rows = [list(case.impls) for case in cases]
    for (c, r), mem in zip(where, measure_cpu_memory(jobs, timeout=timeout) if jobs else []):
        row = rows[c][r]
        update: dict[str, Any] = {"memory": mem}
        if mem.status == "oom":
            update.update(status="oom", error=mem.error)
        rows[c][r] = row.model_copy(update=update)
    return [
        case.model_copy(update={"impls": r, "status": r[0].status, "ratios": _ratios(r)}) for case, r in zip(cases, rows)
    ]


def _with_throughput(row: ImplResult, batch: int | None) -> ImplResult:
    if batch is None or row.forward_backward is None or row.forward_backward.median_s <= 0:
        return row
    return row.model_copy(update={"throughput": batch / row.forward_backward.median_s})


def run_cases(
    names: Sequence[str] | None = None,
    *,
    sizes: Iterable[str | Mapping[str, int]] = ("small",),
    progress: bool = False,
    **kwargs: Any,
) -> list[CaseResult]:
    """:func:`run_case` for every loss in ``names`` (default: all registered) at every size.

    Losses without an ``example_inputs`` factory are skipped when ``names`` is None
    (and an error when named). With ``progress`` a tqdm bar goes to stderr (when it is a
    terminal; tqdm comes with the ``tools`` extra). ``kwargs`` go to :func:`run_case`.
    """
    from losskit.registry import list_losses

    if names:
        selected = list(names)
    else:
        selected = [n for n in list_losses() if bench_of(get_spec(n)).example_inputs is not None]
    sizes = list(sizes)
    specs = [get_spec(n) for n in selected]
    for s in sizes:
        if isinstance(s, str):
            check_size_keys(specs, s)
    # on CPU the memory of all cases is measured at the end, in one child process
    cpu_memory = kwargs.get("memory", True) and resolve_device(kwargs.get("device", "cpu")).type == "cpu"
    per_case = {**kwargs, "memory": kwargs.get("memory", True) and not cpu_memory}
    steps = sum((1 + len(bench_of(sp).baselines) * kwargs.get("baselines", True)) for sp in specs) * len(sizes)
    results = []
    with progress_bar(steps, progress) as on_step:
        for n in selected:
            for s in sizes:
                results.append(run_case(n, size=s, strict_size=False, on_step=on_step, **per_case))
    if cpu_memory:
        results = add_cpu_memory(results, timeout=kwargs.get("memory_timeout", 1800.0))
    return results
