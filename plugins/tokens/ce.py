"""``token_ce``: next-token cross-entropy over materialised logits (Hugging Face conventions).

Two implementations, chosen by the ``kernel`` field (:func:`losskit.kernels.use_triton`):

- Triton (CUDA; ``"auto"`` there): :mod:`losskit_plugins.tokens.triton_ce`, one kernel
  launch that reads each row of logits, writes its loss, log Z and gradient; backward
  only scales that gradient. ``in_place=True`` writes the gradient into the logits.
- PyTorch (everywhere else): one autograd function that walks the logits in row chunks
  through a small reusable fp32 buffer: it never allocates a second ``[N, V]`` tensor in
  the forward pass (``F.cross_entropy`` keeps its ``log_softmax`` output), fp16/bf16
  logits are upcast one chunk at a time, and the backward pass writes the logits'
  gradient in one sweep.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import losskit
from losskit.checks import compute_dtype
from losskit.kernels import use_triton

from losskit_plugins.tokens.call import prepare_call
from losskit_plugins.tokens.config import TokenCEConfig
from losskit_plugins.tokens.inputs import check_logits_by_lse, flat_rows
from losskit_plugins.tokens.kernels import (
    RowOptions,
    Targets,
    chunk_stats_readonly,
    logit_grad_,
    rows_per_chunk,
    softmax_into,
    upcast_capped,
)
from losskit_plugins.tokens.output import row_scale, token_output, triton_output
from losskit_plugins.tokens.triton_ce import triton_rows

__all__ = ["TokenCELoss", "token_rows"]


class _TokenRows(torch.autograd.Function):
    """``logits [N, V] -> (ce [N], lse [N], correct [N])``; ``ce`` and ``lse`` are differentiable."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, logits: Tensor, index: Tensor, valid: Tensor, opts: RowOptions, rows: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        n, v = logits.shape
        dtype = compute_dtype(logits)
        targets = Targets(index, valid)
        ce = logits.new_empty(n, dtype=dtype)
        lse = logits.new_empty(n, dtype=dtype)
        correct = torch.empty(n, dtype=torch.bool, device=logits.device)
        buf = logits.new_empty(min(rows, n), v, dtype=dtype)  # [rows, V] scratch
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            stats = chunk_stats_readonly(logits[start:stop], buf[: stop - start], targets.rows(start, stop), opts)
            ce[start:stop], lse[start:stop], correct[start:stop] = stats.ce, stats.lse, stats.correct
        ctx.save_for_backward(logits, index, valid, lse)
        ctx.opts, ctx.rows = opts, rows
        ctx.mark_non_differentiable(correct)
        ctx.set_materialize_grads(False)
        return ce, lse, correct

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_ce: Tensor | None, g_lse: Tensor | None, _: Any) -> tuple[Tensor | None, ...]:
        logits, index, valid, lse = ctx.saved_tensors
        if g_ce is None and g_lse is None:
            return (None,) * 5
        targets, rows, n, opts = Targets(index, valid), ctx.rows, logits.shape[0], ctx.opts
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        buf = None if grad.dtype == lse.dtype else logits.new_empty(min(rows, n), logits.shape[1], dtype=lse.dtype)
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            dst = grad[start:stop] if buf is None else buf[: stop - start]
            z = upcast_capped(logits[start:stop], lse.dtype, opts)  # [n, V]
            softmax_into(z, dst)  # [n, V] softmax rows
            logit_grad_(
                dst,
                targets.rows(start, stop),
                None if g_ce is None else g_ce[start:stop],
                None if g_lse is None else g_lse[start:stop],
                opts,
                cap_factor=opts.cap_factor(z),
            )
            if buf is not None:
                grad[start:stop].copy_(dst)
        return grad, None, None, None, None


def token_rows(logits: Tensor, targets: Targets, opts: RowOptions) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token ``(ce [N], lse [N], correct [N])`` of ``logits [N, V]`` in fp32 (fp64 stays fp64), PyTorch path."""
    rows = rows_per_chunk(logits.shape[1], None, logits.shape[0])
    return _TokenRows.apply(logits, targets.index, targets.valid, opts, rows)


class TokenCELoss(losskit.Loss[TokenCEConfig]):
    """Next-token cross-entropy with Hugging Face ``ForCausalLMLoss`` conventions.

    Call: ``loss(logits [B, T, V] or [N, V], labels [B, T] or [N], *, num_items_in_batch=None,
    weights=None, class_weights=None)``.

    - Causal shift (``shift``; default on for 3-D input): position ``t`` predicts
      ``labels[..., t + 1]``; labels are padded with ``ignore_index`` and shifted, the
      logits are not copied.
    - ``"mean"``: sum over tokens / ``num_items_in_batch`` when given (exact gradient
      accumulation across micro-batches and ranks), else / number of supervised tokens.
      ``"none"``: per-token losses in the shape of ``labels`` (0 on ignored tokens).
    - ``weights [B, T] / [N]``: per-token factors aligned with ``labels`` (shifted with them).
    - ``class_weights [V]``: per-class factors, ``F.cross_entropy``'s ``weight`` (Liger's
      ``ce_weight``): a token's cross-entropy is scaled by its target's weight and
      ``"mean"`` divides by the sum of those weights (constants: not differentiated).
    - ``softcap``: Gemma 2's final-logit cap ``c tanh(logits / c)`` before the loss.
    - ``kernel``: the Triton kernel on CUDA (``"auto"``), else PyTorch; on the Triton path
      ``parts`` are detached values and ``in_place=True`` overwrites the logits with
      their gradient.
    - Parts ``ce`` and ``z_loss`` (PaLM z-loss, coefficient ``z_loss``); metrics
      ``accuracy``, ``num_tokens`` (supervised) and ``mean_log_z``.
    - All labels ignored: a zero still attached to the graph.
    """

    config_class = TokenCEConfig

    def compute(
        self,
        logits: Tensor,
        labels: Tensor,
        *,
        num_items_in_batch: int | Tensor | None = None,
        weights: Tensor | None = None,
        class_weights: Tensor | None = None,
    ) -> losskit.LossOutput:
        cfg = self.config
        rows = flat_rows(logits, "logits", "[B, T, V] or [N, V]")
        flat, num_items, dtype, cw, opts = prepare_call(
            cfg, labels, logits.shape[:-1], logits.shape[-1], inputs_name="logits", device=logits.device,
            dtype=compute_dtype(logits), weights=weights, num_items_in_batch=num_items_in_batch, class_weights=class_weights,
        )
        if use_triton(cfg.kernel, logits.device):
            scale = row_scale(flat, cfg.reduction, num_items, dtype, cw)
            index = torch.where(flat.targets.valid, flat.targets.index, -1)  # [N], -1 on ignored rows
            row_loss, ce, lse, correct = triton_rows(rows, scale, index, opts, cfg.z_loss, in_place=cfg.in_place)
            check_logits_by_lse(cfg.check_inputs, lse, rows)  # (0 on ignored rows)
            return triton_output(row_loss, ce, lse, correct, scale, flat, z_loss=cfg.z_loss, reduction=cfg.reduction)
        ce, lse, correct = token_rows(rows, flat.targets, opts)
        check_logits_by_lse(cfg.check_inputs, lse, rows)
        return token_output(
            ce, lse, correct, flat, z_loss=cfg.z_loss, reduction=cfg.reduction, num_items=num_items, class_weights=cw
        )
