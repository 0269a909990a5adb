"""What one benchmark case is made of: size, dtype and device resolution, inputs, the
callables to time (the loss and its baselines), and out-of-memory detection.

Shared by the timing process and the isolated memory process, so both build exactly
the same inputs (same factory, same seed) and the same calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from losskit.bench.spec import BenchSpec
from losskit.spec import Inputs, LossSpec
from losskit.testing import map_tensors

__all__ = [
    "BATCH_KEYS",
    "DTYPES",
    "LOSS_IMPL",
    "Impl",
    "bench_of",
    "build_impls",
    "check_size_keys",
    "config_json",
    "draw_inputs",
    "grad_leaves",
    "is_oom",
    "parse_size",
    "resolve_device",
    "resolve_size",
    "throughput_keys",
]

#: ``--dtype`` names to torch dtypes.
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Size keys counted as "samples" for the throughput when a spec declares no
#: ``throughput_keys``: the first present wins.
BATCH_KEYS: tuple[str, ...] = ("B", "N")

#: Label of the losskit loss's own row (baselines use their registered labels).
LOSS_IMPL = "losskit"

_OOM_MESSAGES = ("out of memory", "can't allocate memory", "not enough memory", "cannot allocate memory")


def bench_of(spec: LossSpec) -> BenchSpec:
    """The spec's :class:`BenchSpec`; a loss that declared none gets the defaults (no inputs, no baselines)."""
    return spec.bench if spec.bench is not None else BenchSpec()


def is_oom(exc: BaseException) -> bool:
    """True for ``torch.OutOfMemoryError``, ``MemoryError`` and allocator failures raised as ``RuntimeError``.

    PyTorch's CPU allocator reports a failed allocation as a ``RuntimeError``
    ("DefaultCPUAllocator: can't allocate memory"), not as ``OutOfMemoryError``.
    """
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MESSAGES)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        ValueError: CUDA was asked for and is not available, or an unknown device.
    """
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise ValueError(f"device: {name!r} requested but CUDA is not available ({why}); use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device: {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type != "cpu":
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {name!r}")
    return dev


def parse_size(text: str) -> tuple[str | None, dict[str, int]]:
    """Parse ``--size``: ``"small"``, ``"B=512,D=128"`` or ``"medium,B=512"``.

    Returns ``(preset or None, overrides)``.

    Raises:
        ValueError: empty items, several presets, a bad ``KEY=VALUE`` or a value < 1.
    """
    preset: str | None = None
    overrides: dict[str, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"size: empty item in {text!r}; expected e.g. small or B=512,D=128")
        if "=" not in item:
            if preset is not None:
                raise ValueError(f"size: two presets ({preset!r}, {item!r}) in {text!r}; give at most one")
            preset = item
            continue
        key, _, value = item.partition("=")
        key = key.strip()
        try:
            n = int(value.replace("_", ""))
        except ValueError:
            raise ValueError(f"size: {item!r} needs an integer value, e.g. {key}=512") from None
        if n < 1:
            raise ValueError(f"size: {key} must be >= 1, got {n}")
        overrides[key] = n
    return preset, overrides


def resolve_size(spec: LossSpec, size: str | Mapping[str, int]) -> tuple[str, dict[str, int]]:
    """The size dict of one case and its label.

    ``size`` is a ``--size`` string (see :func:`parse_size`; overrides apply on top of
    the preset, ``small`` by default) or a mapping of every key. Override keys that the
    spec's sizes do not have are ignored for this spec, so one ``--size B=...`` can
    apply to several losses; :func:`check_size_keys` rejects keys that no selected
    loss has.

    Raises:
        ValueError: unknown preset, or a mapping missing a key of the spec's sizes.
    """
    if isinstance(size, Mapping):
        need = set(_preset(spec, next(iter(bench_of(spec).sizes))))
        missing = need - set(size)
        if missing:
            raise ValueError(f"size: {spec.name} needs keys {sorted(need)}, missing {sorted(missing)}")
        out = {k: int(v) for k, v in size.items()}
        return ",".join(f"{k}={v}" for k, v in out.items()), out
    preset, overrides = parse_size(size)
    base = dict(_preset(spec, preset or "small"))
    applied = {k: v for k, v in overrides.items() if k in base}
    base.update(applied)
    label = ",".join([preset or "small"] + [f"{k}={v}" for k, v in applied.items()])
    return label, base


def check_size_keys(specs: list[LossSpec], size: str) -> None:
    """Reject ``--size`` override keys that none of ``specs`` uses (a likely typo)."""
    _, overrides = parse_size(size)
    known = {k for s in specs for preset in bench_of(s).sizes.values() for k in preset}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"size: unknown key(s) {unknown}; the selected losses use {sorted(known)}")


def _preset(spec: LossSpec, name: str) -> Mapping[str, int]:
    sizes = bench_of(spec).sizes
    if name not in sizes:
        raise ValueError(f"size: {spec.name} has no size preset {name!r}; presets: {', '.join(sizes)}")
    return sizes[name]


def throughput_keys(spec: LossSpec, size: Mapping[str, int]) -> tuple[str, ...] | None:
    """Size keys whose product is the items per call: the spec's ``throughput_keys``,
    else the first of :data:`BATCH_KEYS` in ``size``, else None (no throughput)."""
    declared = bench_of(spec).throughput_keys
    if declared is not None:
        return tuple(declared)
    key = next((k for k in BATCH_KEYS if k in size), None)
    return (key,) if key else None


def draw_inputs(spec: LossSpec, size: Mapping[str, int], *, dtype: str, device: torch.device, seed: int) -> Inputs:
    """Inputs of one case from the spec's ``example_inputs`` factory (seeded).

    Raises:
        ValueError: the loss declares no ``example_inputs`` factory.
    """
    factory = bench_of(spec).example_inputs
    if factory is None:
        raise ValueError(f"{spec.qualified_name} declares no example_inputs factory; it cannot be benchmarked")
    generator = torch.Generator().manual_seed(seed)
    return factory(size, dtype=DTYPES[dtype], device=device, generator=generator)


def grad_leaves(inputs: Inputs) -> list[Tensor]:
    """Input tensors with ``requires_grad`` (what forward+backward differentiates)."""
    found: list[Tensor] = []
    map_tensors((inputs.args, inputs.kwargs), lambda t: found.append(t) if t.requires_grad else None)
    return found


@dataclass(frozen=True)
class Impl:
    """One thing to time: the loss module or a baseline, and what its backward differentiates."""

    label: str
    fn: Callable[..., Tensor]
    params: tuple[Tensor, ...] = ()

    def wrt(self, inputs: Inputs) -> list[Tensor]:
        """Differentiable inputs plus this implementation's own parameters."""
        return grad_leaves(inputs) + list(self.params)


def build_impls(spec: LossSpec, config: Any, device: torch.device, *, baselines: bool = True) -> list[Impl]:
    """The loss (built from ``config``, a dict of fields or None) and, optionally, its baselines.

    Baselines are called with the loss's inputs; the loss's learnable parameters are
    part of its backward (they are trained too).
    """
    from losskit.registry import resolve_config

    cfg = resolve_config({"name": spec.qualified_name, **dict(config or {})})
    loss = spec.loss_class(cfg).to(device)
    impls = [Impl(LOSS_IMPL, loss, tuple(p for p in loss.parameters() if p.requires_grad))]
    if baselines:
        impls += [Impl(label, fn) for label, fn in bench_of(spec).baselines.items()]
    return impls


def config_json(config: Any, spec: LossSpec) -> dict[str, Any]:
    """The full config (defaults filled in) as JSON-ready fields."""
    from losskit.registry import resolve_config

    return resolve_config({"name": spec.qualified_name, **dict(config or {})}).model_dump(mode="json")

