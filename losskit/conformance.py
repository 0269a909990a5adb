"""The checks of the conformance kit (:func:`losskit.testing.check_loss` runs them).

Each check takes the shared :class:`CheckContext` (the spec, a loss builder and the
drawn inputs), raises ``AssertionError`` on failure and returns a note (``""``, or
``"not applicable: ..."``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from losskit.config import validate_config
from losskit.errors import ConfigError, PluginError
from losskit.loss import Loss
from losskit.spec import DEFAULT_SIZES, InputFactory, Inputs, LossSpec

__all__ = ["CHECKS", "CheckContext", "map_tensors"]


def map_tensors(obj: Any, fn: Callable[[Tensor], Any]) -> Any:
    """Apply ``fn`` to every tensor inside nested tuples, lists and dicts."""
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # NamedTuple
        return type(obj)(*(map_tensors(v, fn) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    return obj


def _leaves(obj: Any) -> list[Tensor]:
    found: list[Tensor] = []
    map_tensors(obj, found.append)
    return found


def _cast(inputs: Inputs, dtype: torch.dtype) -> Inputs:
    def cast(t: Tensor) -> Tensor:
        if not t.is_floating_point():
            return t
        return t.detach().to(dtype).requires_grad_(t.requires_grad)

    return Inputs(map_tensors(inputs.args, cast), map_tensors(inputs.kwargs, cast))


def _fresh(inputs: Inputs) -> Inputs:
    return Inputs(
        map_tensors(inputs.args, lambda t: t.detach().clone().requires_grad_(t.requires_grad)),
        map_tensors(inputs.kwargs, lambda t: t.detach().clone().requires_grad_(t.requires_grad)),
    )


class CheckContext:
    """What the checks share: the spec, a loss builder and the drawn inputs."""

    def __init__(self, spec: LossSpec, config: Any, factory: InputFactory, seeds: int) -> None:
        self.spec = spec
        self.config = config
        sizes = spec.bench.sizes if spec.bench is not None else DEFAULT_SIZES
        size = sizes.get("tiny") or next(iter(sizes.values()))
        try:
            self.inputs = [
                factory(size, dtype=torch.float32, device=torch.device("cpu"), generator=torch.Generator().manual_seed(s))
                for s in range(seeds)
            ]
        except Exception as exc:  # noqa: BLE001 - the plugin's factory is broken: one clear error
            first = (str(exc).splitlines() or [""])[0]
            raise PluginError(
                f"{spec.qualified_name}: its example_inputs factory raised {type(exc).__name__}: {first} (size {dict(size)})"
            ) from exc

    def build(self, **overrides: Any) -> Loss:
        base = self.config.model_dump() if self.config is not None else {}
        config = validate_config(self.spec.config_class, {**base, **overrides})
        return self.spec.loss_class(config)


def _check_config(ctx: CheckContext) -> str:
    loss = ctx.build()
    cfg = loss.config
    again = type(cfg).model_validate_json(cfg.model_dump_json())
    if again != cfg:
        raise AssertionError(f"config does not survive a JSON round-trip: {cfg!r} -> {again!r}")
    schema = ctx.spec.config_class.model_json_schema()
    bare = [k for k, v in schema.get("properties", {}).items() if not v.get("description")]
    if bare:
        raise AssertionError(f"config fields without a description: {', '.join(bare)}")
    return ""


def _check_bad_config(ctx: CheckContext) -> str:
    for bad in ({"reduction": "bogus"}, {"no_such_field_xyz": 1}):
        try:
            ctx.build(**bad)
        except ConfigError:
            continue
        raise AssertionError(f"config {bad} was accepted; expected ConfigError")
    return ""


def _grads(loss: Loss, inputs: Inputs) -> list[Tensor]:
    wrt = [t for t in _leaves(inputs) if t.requires_grad] + [p for p in loss.parameters() if p.requires_grad]
    value = loss(*inputs.args, **inputs.kwargs)
    if not wrt:
        return [value]
    grads = torch.autograd.grad(value.sum(), wrt, allow_unused=True)
    return [value] + [g for g in grads if g is not None]


def _check_finite(ctx: CheckContext) -> str:
    loss = ctx.build()
    for i, inputs in enumerate(ctx.inputs):
        for j, t in enumerate(_grads(loss, _fresh(inputs))):
            if not bool(torch.isfinite(t).all()):
                what = "loss" if j == 0 else f"gradient #{j}"
                raise AssertionError(f"draw {i}: {what} is not finite")
    return ""


def _check_gradcheck(ctx: CheckContext) -> str:
    loss = ctx.build().double()
    params = {n: p for n, p in loss.named_parameters() if p.requires_grad}
    for inputs in ctx.inputs:
        inputs64 = _cast(inputs, torch.float64)
        leaves = [t for t in _leaves(inputs64) if t.requires_grad]
        n_in = len(leaves)
        names = list(params)

        def fn(*tensors: Tensor, inputs64: Inputs = inputs64, leaves: list[Tensor] = leaves) -> Tensor:
            swap = {id(old): new for old, new in zip(leaves, tensors[:n_in])}
            call = Inputs(
                map_tensors(inputs64.args, lambda t: swap.get(id(t), t)),
                map_tensors(inputs64.kwargs, lambda t: swap.get(id(t), t)),
            )
            new_params = dict(zip(names, tensors[n_in:]))
            return torch.func.functional_call(loss, new_params, call.args, call.kwargs, strict=False)

        wrt = tuple(leaves) + tuple(p.detach().clone().requires_grad_(True) for p in params.values())
        if not wrt:
            return "no differentiable inputs"
        torch.autograd.gradcheck(fn, wrt, eps=1e-6, atol=1e-5, rtol=1e-4, nondet_tol=1e-10)
    return ""


def _accepts(ctx: CheckContext, **overrides: Any) -> bool:
    try:
        ctx.build(**overrides)
    except ConfigError:
        return False
    return True


def _check_reduction(ctx: CheckContext) -> str:
    if not _accepts(ctx, reduction="none"):
        return "not applicable: reduction='none' is not supported"
    with torch.no_grad():
        for i, inputs in enumerate(ctx.inputs):
            none = ctx.build(reduction="none")(*inputs.args, **inputs.kwargs).double()
            total = ctx.build(reduction="sum")(*inputs.args, **inputs.kwargs).double()
            mean = ctx.build(reduction="mean")(*inputs.args, **inputs.kwargs).double()
            if total.dim() != 0 or mean.dim() != 0:
                raise AssertionError(f"draw {i}: 'sum'/'mean' must give scalars, got {tuple(total.shape)}/{tuple(mean.shape)}")
            if not torch.allclose(none.sum(), total, rtol=1e-4, atol=1e-5):
                raise AssertionError(f"draw {i}: sum of reduction='none' ({none.sum():.6g}) != reduction='sum' ({total:.6g})")
            if abs(float(mean)) > 1e-8:
                n = float(total / mean)
                if not (0 < n <= none.numel() * (1 + 1e-4)):
                    raise AssertionError(f"draw {i}: 'mean' is sum / {n:.4g}, expected 0 < n <= {none.numel()}")
    return ""


def _check_low_precision(ctx: CheckContext) -> str:
    loss = ctx.build()
    with torch.no_grad():
        for i, inputs in enumerate(ctx.inputs):
            ref = loss(*inputs.args, **inputs.kwargs)
            for dtype in (torch.float16, torch.bfloat16):
                low = _cast(inputs, dtype)
                # compare against fp32 inputs that carry the same rounding
                same = _cast(low, torch.float32)
                out = loss(*low.args, **low.kwargs)
                want = loss(*same.args, **same.kwargs)
                if out.dtype != torch.float32:
                    raise AssertionError(f"draw {i}: {dtype} inputs gave a {out.dtype} result, expected torch.float32")
                if not torch.allclose(out, want, rtol=2e-2, atol=2e-2):
                    raise AssertionError(f"draw {i}: {dtype} result {out} differs from fp32 {want} (ref {ref})")
    return ""


def _check_state_dict(ctx: CheckContext) -> str:
    first, second = ctx.build(), ctx.build()
    params = list(first.parameters())
    if not params and not list(first.buffers()):
        return "not applicable: the loss has no state"
    with torch.no_grad():
        for p in params:
            p.add_(0.05)
    second.load_state_dict(first.state_dict())
    inputs = ctx.inputs[0]
    with torch.no_grad():
        a = first(*inputs.args, **inputs.kwargs)
        b = second(*inputs.args, **inputs.kwargs)
    if not torch.equal(a, b):
        raise AssertionError(f"after load_state_dict the loss differs: {a} vs {b}")
    return ""


#: check name -> function; each raises ``AssertionError`` on failure and returns a note.
CHECKS: dict[str, Callable[[CheckContext], str]] = {
    "config": _check_config,
    "bad_config": _check_bad_config,
    "finite": _check_finite,
    "gradcheck": _check_gradcheck,
    "reduction": _check_reduction,
    "low_precision": _check_low_precision,
    "state_dict": _check_state_dict,
}
