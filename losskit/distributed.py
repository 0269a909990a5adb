"""Small ``torch.distributed`` helpers shared by losses and the trainer.

Nothing here knows about any particular loss. The gathers use torch's own
collectives (``all_gather_into_tensor``; in backward ``reduce_scatter_tensor`` on NCCL,
``all_reduce`` on backends without reduce-scatter such as gloo), never a home-made
transport. (``torch.distributed.nn.functional.all_gather``, which does the same, is
deprecated as of torch 2.14.)

Gradient convention of :func:`all_gather_with_grad`: the backward of the gather
*sums* the gradients that every rank sends back to a shard. If each rank ``r``
computes a loss ``L_r`` from gathered features, the gradient reaching rank ``r``'s
features is ``sum_r' dL_r'/dx_r``; with ``L_global = mean_r L_r`` that is
``W * dL_global/dx_r`` (``W`` = world size), which DDP's 1/W gradient averaging turns
into exactly the single-process gradient of ``L_global``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DistributedMode",
    "all_gather_no_grad",
    "all_gather_with_grad",
    "average_gradients",
    "is_initialized",
    "rank",
    "use_gather",
    "world_size",
]

DistributedMode = Literal["none", "gather", "auto"]


def is_initialized() -> bool:
    """True when ``torch.distributed`` is available and a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def world_size(group: object | None = None) -> int:
    """Number of processes in ``group`` (1 without a process group)."""
    return dist.get_world_size(group) if is_initialized() else 1


def rank(group: object | None = None) -> int:
    """Rank of this process in ``group`` (0 without a process group)."""
    return dist.get_rank(group) if is_initialized() else 0


def use_gather(mode: DistributedMode, group: object | None = None) -> bool:
    """Whether a loss configured with ``distributed=mode`` gathers across processes.

    ``"none"``: never. ``"auto"``: when a process group is initialised and its world
    size is > 1. ``"gather"``: always; raises ``RuntimeError`` without a process group.
    """
    if mode == "none":
        return False
    if mode == "gather":
        if not is_initialized():
            raise RuntimeError(
                "distributed='gather' needs an initialised torch.distributed process group "
                "(torch.distributed.init_process_group, e.g. under torchrun); use 'auto' or 'none'"
            )
        return True
    if mode == "auto":
        return world_size(group) > 1
    raise ValueError(f"distributed: expected 'none', 'gather' or 'auto', got {mode!r}")


def _check_same_shape(t: Tensor, name: str, group: object | None) -> None:
    # all_gather needs one shape on every rank; a mismatch would hang or garble data.
    shape = torch.tensor(list(t.shape), dtype=torch.long, device=t.device)
    shapes = [torch.empty_like(shape) for _ in range(world_size(group))]
    dist.all_gather(shapes, shape, group=group)
    if any(not torch.equal(s, shape) for s in shapes):
        listing = ", ".join(str(tuple(s.tolist())) for s in shapes)
        raise ValueError(f"{name}: every rank must pass the same shape to be gathered, got {listing}")


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums each shard's gradient over ranks."""

    @staticmethod
    def forward(ctx, t: Tensor, group: object | None) -> Tensor:  # type: ignore[override]
        ctx.group = group
        out = t.new_empty((world_size(group) * t.shape[0], *t.shape[1:]))  # [W*N, ...]
        dist.all_gather_into_tensor(out, t.contiguous(), group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        group = ctx.group
        n = grad.shape[0] // world_size(group)
        grad = grad.contiguous()
        if dist.get_backend(group) == dist.Backend.NCCL:
            out = grad.new_empty((n, *grad.shape[1:]))
            dist.reduce_scatter_tensor(out, grad, group=group)  # sum over ranks of this rank's rows
            return out, None
        total = grad.clone()  # backends without reduce-scatter (gloo): all-reduce, keep this rank's rows
        dist.all_reduce(total, group=group)
        r = rank(group)
        return total[r * n : (r + 1) * n], None


def all_gather_with_grad(t: Tensor, *, name: str = "tensor", group: object | None = None) -> Tensor:
    """Concatenate ``t [N, ...]`` from every rank along dim 0 -> ``[W*N, ...]``, differentiably.

    Rank ``r``'s shard is rows ``r*N:(r+1)*N``. Backward sums the incoming gradients of
    each shard over ranks (reduce-scatter on NCCL, all-reduce elsewhere; see the module
    docstring for how this composes with DDP). Every rank must pass the same shape
    (checked: ``ValueError`` naming ``name``).
    """
    if world_size(group) == 1:
        return t
    _check_same_shape(t, name, group)
    return _GatherWithGrad.apply(t, group)


def all_gather_no_grad(t: Tensor, *, name: str = "tensor", group: object | None = None) -> Tensor:
    """Like :func:`all_gather_with_grad` without autograd (e.g. for integer ids)."""
    if world_size(group) == 1:
        return t
    _check_same_shape(t, name, group)
    out = [torch.empty_like(t) for _ in range(world_size(group))]
    dist.all_gather(out, t.contiguous(), group=group)
    return torch.cat(out, dim=0)


def average_gradients(module: torch.nn.Module, group: object | None = None) -> None:
    """All-reduce-average the ``.grad`` of ``module``'s parameters over ranks.

    What DDP does for parameters of the wrapped model; call it for a loss's own
    parameters (temperature, bias) when the loss is not inside the DDP module.
    """
    if world_size(group) == 1:
        return
    n = world_size(group)
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, group=group)
            p.grad.div_(n)
