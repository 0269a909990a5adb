"""The Triton path of the token losses: one kernel computes each row's loss and its gradient.

:class:`_TritonRows` runs the row kernel of :mod:`losskit_plugins.tokens.triton_kernel`
(imported here lazily, so importing the losses never needs Triton) in the forward pass
and keeps the logits' gradient of the scaled per-row loss; the backward pass only
multiplies it, row by row, by the upstream gradient (Liger-Kernel's cross-entropy
design: one read of the logits and one write of their gradient, then one read-modify-
write in backward, no ``[N, V]`` fp32 temporaries, no host synchronisation).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from losskit_plugins.tokens.kernels import RowOptions

__all__ = ["triton_rows"]


def _launch(logits: Tensor, grad: Tensor | None, index: Tensor, scale: Tensor, opts: RowOptions, z_loss: float):
    """Run the kernel; return ``(row_loss, ce, lse, correct)``, each ``[N]``."""
    from losskit_plugins.tokens import triton_kernel as kernel  # lazy: imports triton
    n = logits.shape[0]
    dtype = scale.dtype
    outputs = (
        logits.new_empty(n, dtype=dtype),
        logits.new_empty(n, dtype=dtype),
        logits.new_empty(n, dtype=dtype),
        torch.empty(n, dtype=torch.int8, device=logits.device),
    )
    if n:  # (an empty grid is not launched)
        kernel.launch_rows(
            logits, grad, index, scale, opts.class_weights, outputs,
            label_smoothing=opts.label_smoothing, z_loss=z_loss, softcap=opts.softcap,
        )
    return outputs


class _TritonRows(torch.autograd.Function):
    """``(logits [N, V], scale [N]) -> (row_loss [N], ce [N], lse [N], correct [N])``.

    ``row_loss = scale (ce + z_loss lse^2)`` is differentiable (w.r.t. the logits and the
    scale); the rest are values.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, logits: Tensor, scale: Tensor, index: Tensor, opts: RowOptions, z_loss: float, in_place: bool
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        grad = None
        if ctx.needs_input_grad[0]:
            grad = logits if in_place else torch.empty_like(logits)
        row_loss, ce, lse, correct = _launch(logits, grad, index, scale, opts, z_loss)
        correct = correct.view(torch.bool)
        if in_place and grad is not None:
            torch.autograd.graph.increment_version(logits)  # ops that saved the logits now fail loudly
        # the gradient is held on ctx, not saved: with in_place it shares the logits' storage
        ctx.grad = grad
        per_row = ce + z_loss * lse.square() if z_loss > 0 else ce
        ctx.save_for_backward(per_row)
        ctx.mark_non_differentiable(ce, lse, correct)
        ctx.set_materialize_grads(False)
        return row_loss, ce, lse, correct

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_loss: Tensor | None, *_: Any) -> tuple[Tensor | None, ...]:
        (per_row,) = ctx.saved_tensors
        if g_loss is None:
            return (None,) * 6
        grad = None
        if ctx.needs_input_grad[0]:
            if ctx.grad is None:
                raise RuntimeError(
                    "token_ce (Triton kernel): the logits' gradient was handed over by an earlier backward; "
                    "for a second backward through the same graph use kernel='torch'"
                )
            grad, ctx.grad = ctx.grad.mul_(g_loss[:, None]), None  # [N, V] scaled in place, in fp32
        g_scale = g_loss * per_row if ctx.needs_input_grad[1] else None
        return grad, g_scale, None, None, None, None


def triton_rows(
    logits: Tensor, scale: Tensor, index: Tensor, opts: RowOptions, z_loss: float, *, in_place: bool = False
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(row_loss, ce, lse, correct)`` of ``logits [N, V]`` by the Triton kernel.

    Args:
        logits: ``[N, V]`` bf16 / fp16 / fp32 / fp64 (copied if its last dim is strided).
        scale: ``[N]`` row scale (per-token weight / divisor, 0 on ignored rows), compute dtype.
        index: ``[N]`` int64 target, -1 on ignored rows.
        opts: smoothing, class weights, cap.
        z_loss: PaLM z-loss coefficient (0 skips the term).
        in_place: write the gradient into ``logits`` (which it overwrites).
    """
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    return _TritonRows.apply(logits, scale, index, opts, z_loss, in_place)
