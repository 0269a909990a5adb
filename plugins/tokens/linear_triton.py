"""The Triton path of ``linear_token_ce`` (``"mean"`` / ``"sum"`` with gradients).

Tokens go through in device-sized chunks (about 512 MiB of logits each: 1766 tokens of
a 151936-token vocabulary in bf16, so ten chunks for 16384 tokens instead of
thousands). Per chunk: the logits ``h_c @ W.T (+ b)`` by one matmul in the inputs'
dtype (bf16 matmuls accumulate in fp32), the row kernel of
:mod:`losskit_plugins.tokens.triton_kernel` turning them in place into the gradient of
the scaled loss, then ``grad_hidden[c] = dz @ W`` and ``grad_W += dz.T @ h_c`` (and
``grad_b += dz.sum(0)`` in fp32): three matmuls and one kernel per chunk, as Liger-
Kernel's fused linear cross-entropy. The backward pass scales the gradients by the
upstream scalar, in place. No host synchronisation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from losskit_plugins.tokens.kernels import RowOptions

__all__ = ["TRITON_CHUNK_BYTES", "triton_linear_total"]

#: Bytes of one chunk of logits on the Triton path.
TRITON_CHUNK_BYTES = 512 << 20


def _chunk_grads(
    h: Tensor, w: Tensor, dz: Tensor, grads: list[Tensor | None], start: int, stop: int
) -> None:
    """Add the chunk's share given the logits' gradient ``dz [n, V]``: ``grads = [hidden, weight, bias]``."""
    if grads[0] is not None:
        torch.mm(dz, w, out=grads[0][start:stop])  # [n, H]
    if grads[1] is not None:
        grads[1].addmm_(dz.t(), h[start:stop])  # [V, H]
    if grads[2] is not None:
        grads[2].add_(dz.sum(dim=0, dtype=grads[2].dtype))  # [V]


class _TritonFused(torch.autograd.Function):
    """``sum_i scale_i (ce_i + z_loss lse_i^2)`` with its gradients computed in forward.

    Returns ``(total, ce [N], lse [N], correct [N])``; only ``total`` is differentiable.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None, scale: Tensor, index: Tensor,
        opts: RowOptions, z_loss: float, rows: int,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        from losskit_plugins.tokens import triton_kernel as kernel  # lazy: imports triton
        dtype = torch.promote_types(hidden.dtype, weight.dtype)
        h, w = hidden.to(dtype), weight.to(dtype)  # no copy when they agree
        b = None if bias is None else bias.to(dtype)
        n, v = h.shape[0], w.shape[0]
        needs = ctx.needs_input_grad
        grads: list[Tensor | None] = [
            torch.empty_like(h) if needs[0] else None,
            torch.zeros_like(w) if needs[1] else None,
            torch.zeros(v, dtype=scale.dtype, device=h.device) if bias is not None and needs[2] else None,
        ]
        outs = [h.new_empty(n, dtype=scale.dtype) for _ in range(3)]  # row_loss, ce, lse
        correct = torch.empty(n, dtype=torch.int8, device=h.device)
        buf = h.new_empty(min(rows, n), v)  # [rows, V] logits, then their gradient
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            z = buf[: stop - start]
            if b is None:
                torch.mm(h[start:stop], w.t(), out=z)
            else:
                torch.addmm(b, h[start:stop], w.t(), out=z)
            chunk_out = (*(o[start:stop] for o in outs), correct[start:stop])
            kernel.launch_rows(
                z, z, index[start:stop], scale[start:stop], opts.class_weights, chunk_out,
                label_smoothing=opts.label_smoothing, z_loss=z_loss, softcap=opts.softcap,
            )
            _chunk_grads(h, w, z, grads, start, stop)
        row_loss, ce, lse = outs
        ctx.grads = grads
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        per_row = ce + z_loss * lse.square() if z_loss > 0 else ce
        ctx.save_for_backward(per_row)
        correct = correct.view(torch.bool)
        ctx.mark_non_differentiable(ce, lse, correct)
        return row_loss.sum(), ce, lse, correct

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_total: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        (per_row,) = ctx.saved_tensors
        if ctx.grads is None:
            raise RuntimeError(
                "linear_token_ce (Triton kernel): the gradients were handed over by an earlier backward; "
                "for a second backward through the same graph use kernel='torch'"
            )
        out = tuple(None if g is None else g.mul_(g_total).to(dt) for g, dt in zip(ctx.grads, ctx.dtypes))
        ctx.grads = None
        g_scale = per_row * g_total if ctx.needs_input_grad[3] else None
        return (*out, g_scale, None, None, None, None)


def triton_linear_total(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, scale: Tensor, index: Tensor,
    opts: RowOptions, z_loss: float, chunk_size: int | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(total, ce [N], lse [N], correct [N])`` of ``hidden [N, H] @ weight [V, H].T (+ bias [V])``.

    ``scale [N]``: each token's factor in the total (0 on ignored tokens); ``index [N]``:
    targets, -1 on ignored tokens; ``chunk_size``: tokens per chunk (None: ~512 MiB of logits).
    """
    n, v = hidden.shape[0], weight.shape[0]
    itemsize = torch.promote_types(hidden.dtype, weight.dtype).itemsize
    rows = chunk_size or max(1, TRITON_CHUNK_BYTES // (v * itemsize))
    rows = max(1, -(-n // -(-n // rows))) if n else 1  # equal chunks
    return _TritonFused.apply(hidden, weight, bias, scale, index, opts, z_loss, rows)
