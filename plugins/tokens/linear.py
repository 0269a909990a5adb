"""``linear_token_ce``: LM head + next-token cross-entropy without materialising the logits.

Tokens are processed in chunks: each chunk's logits ``h_c @ W.T (+ b)`` go into one
reusable ``[chunk, V]`` fp32 buffer, which then holds in turn ``exp(z - max)``, the
logits' gradient, and feeds ``grad_hidden[c] = dz @ W`` and ``grad_W += dz.T @ h_c``
(and ``grad_b += dz.sum(0)``). Extra memory is O(chunk * V) plus O(N) per-token state
and the gradient buffers themselves. Two autograd functions:

- :class:`_FusedTotal` (``reduction`` ``"mean"``/``"sum"`` with gradients on): the
  gradient of the scalar loss is computed in the forward pass, as Liger-Kernel's
  ``LigerFusedLinearCrossEntropy`` does (3 matmuls per chunk, the same as the
  materialised path's forward + backward); backward only scales it by the upstream
  scalar. ``parts`` are then detached values.
- :class:`_RecomputeRows` (``reduction="none"``, or no gradient needed): per-token ``ce`` and
  ``lse`` in the forward pass (1 matmul per chunk); the backward pass recomputes each
  chunk's logits with the per-token upstream gradients (3 more).

No host synchronisation in either loop; pure PyTorch, CPU and GPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import losskit
from losskit.checks import compute_dtype
from losskit.kernels import use_triton

from losskit_plugins.tokens.call import prepare_call
from losskit_plugins.tokens.config import LinearTokenCEConfig
from losskit_plugins.tokens.inputs import check_head
from losskit_plugins.tokens.kernels import LINEAR_CHUNK_ELEMENTS, RowOptions, RowStats, logit_grad_, rows_per_chunk
from losskit_plugins.tokens.linear_chunks import Grads, make_head, scan
from losskit_plugins.tokens.linear_triton import triton_linear_total
from losskit_plugins.tokens.output import metrics, row_scale, token_output

__all__ = ["LinearTokenCELoss"]


class _RecomputeRows(torch.autograd.Function):
    """``(hidden, weight, bias) -> (ce [N], lse [N], correct [N])``; backward recomputes the logits."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        index: Tensor,
        valid: Tensor,
        opts: RowOptions,
        rows: int,
    ) -> tuple[Tensor, Tensor, Tensor]:
        head = make_head(hidden, weight, bias, index, valid, rows, opts)
        stats = scan(head)
        ctx.save_for_backward(hidden, weight, bias, index, valid, stats.lse)
        ctx.opts, ctx.rows = opts, rows
        ctx.mark_non_differentiable(stats.correct)
        ctx.set_materialize_grads(False)
        return stats.ce, stats.lse, stats.correct

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_ce: Tensor | None, g_lse: Tensor | None, _: Any) -> tuple[Tensor | None, ...]:
        hidden, weight, bias, index, valid, lse = ctx.saved_tensors
        none = (None,) * 4
        if g_ce is None and g_lse is None:
            return (None,) * 3 + none
        head = make_head(hidden, weight, bias, index, valid, ctx.rows, ctx.opts)
        grads = Grads(head, tuple(ctx.needs_input_grad[:3]))  # type: ignore[arg-type]
        buf = head.buffer()
        for start in head.chunks():
            z, stop, factor = head.logits(start, buf)
            z.sub_(lse[start:stop, None]).exp_()  # softmax rows
            dz = logit_grad_(
                z,
                head.targets.rows(start, stop),
                None if g_ce is None else g_ce[start:stop],
                None if g_lse is None else g_lse[start:stop],
                ctx.opts,
                cap_factor=factor,
            )
            grads.add_chunk(head, start, stop, dz)
        return grads.cast((hidden, weight, bias)) + none


class _FusedTotal(torch.autograd.Function):
    """``sum_i row_weight_i (ce_i + z_loss lse_i^2)`` with its gradient computed in forward.

    Returns ``(total, ce_sum, z_sum, lse [N], correct [N])``; only ``total`` is
    differentiable (w.r.t. hidden, weight, bias and ``row_weight``).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        row_weight: Tensor,
        index: Tensor,
        valid: Tensor,
        opts: RowOptions,
        z_loss: float,
        rows: int,
    ) -> tuple[Tensor, ...]:
        head = make_head(hidden, weight, bias, index, valid, rows, opts)
        row_w = row_weight.to(head.hidden.dtype)  # [N], 0 on ignored rows
        grads = Grads(head, tuple(ctx.needs_input_grad[:3]))  # type: ignore[arg-type]

        def backprop_chunk(start: int, stop: int, e: Tensor, stats: RowStats, factor: Tensor | None) -> None:
            g_ce = row_w[start:stop]
            g_lse = 2.0 * z_loss * g_ce * stats.lse if z_loss > 0 else None
            dz = logit_grad_(
                e, head.targets.rows(start, stop), g_ce, g_lse, opts, sum_exp=stats.sum_exp, cap_factor=factor
            )
            grads.add_chunk(head, start, stop, dz)

        stats = scan(head, backprop_chunk if any(ctx.needs_input_grad[:3]) else None)
        zero = torch.zeros((), dtype=stats.lse.dtype, device=stats.lse.device)
        valid_lse = torch.where(head.targets.valid, stats.lse, zero)
        z_rows = z_loss * valid_lse.square() if z_loss > 0 else torch.zeros_like(stats.lse)  # [N]
        ce_sum, z_sum = (row_w * stats.ce).sum(), (row_w * z_rows).sum()
        saved = [g if g is not None else zero for g in (grads.hidden, grads.weight, grads.bias)]
        ctx.save_for_backward(*saved, stats.ce + z_rows)
        ctx.has = (grads.hidden is not None, grads.weight is not None, grads.bias is not None)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype, row_weight.dtype)
        ctx.applied = None
        ctx.mark_non_differentiable(ce_sum, z_sum, stats.lse, stats.correct)
        return ce_sum + z_sum, ce_sum, z_sum, stats.lse, stats.correct

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_total: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        *saved, per_row = ctx.saved_tensors
        scale = g_total
        in_place = ctx.applied is None
        if not in_place:
            # Backward again through a retained graph: the buffers hold the gradient
            # times the first upstream value; rescale out of place (rare path, syncs once).
            if not bool(ctx.applied != 0):
                raise RuntimeError(
                    "linear_token_ce: a second backward through the fused loss after a zero upstream "
                    "gradient cannot be recovered; use reduction='none' with .sum() for repeated backward"
                )
            scale = g_total / ctx.applied
        ctx.applied = g_total.detach().clone() if in_place else ctx.applied
        out: list[Tensor | None] = []
        for g, has, dtype in zip(saved, ctx.has, ctx.dtypes):
            if not has:
                out.append(None)
            elif in_place:
                # scale the buffer without bumping its saved-tensor version (so a retained
                # graph can be backpropagated again) and hand it over without a copy
                g.data.mul_(scale)
                out.append(g.to(dtype))
            else:
                out.append((g * scale).to(dtype))
        g_row = (per_row * g_total).to(ctx.dtypes[3]) if ctx.needs_input_grad[3] else None
        return (*out, g_row, None, None, None, None, None)


class LinearTokenCELoss(losskit.Loss[LinearTokenCEConfig]):
    """Fused LM head + next-token cross-entropy that never materialises the ``[N, V]`` logits.

    Call: ``loss(hidden [B, T, H] or [N, H], weight [V, H], labels [B, T] or [N], *,
    bias=None [V], num_items_in_batch=None, weights=None, class_weights=None [V])``.

    Equal to ``token_ce`` on ``hidden @ weight.T + bias`` (same config fields and
    conventions: causal shift, ``ignore_index``, ``num_items_in_batch``, label smoothing,
    z-loss, soft cap, per-token ``weights``, per-class ``class_weights``, reduction),
    computed ``chunk_size`` tokens at a time. With ``reduction`` ``"mean"``/``"sum"`` and
    gradients enabled, the gradients are computed in the forward pass and ``parts`` are
    detached values: backpropagate ``loss``. On CUDA (``kernel="auto"``) that case runs
    the Triton path (:mod:`losskit_plugins.tokens.linear_triton`: matmuls in the inputs'
    dtype, chunks of ~512 MiB of logits, one backward per graph); elsewhere, and for
    ``"none"`` or without gradients, the PyTorch path computes in fp32 (fp64 inputs stay
    fp64; fp16/bf16 ``weight`` is upcast once, a ``[V, H]`` copy), where retaining the
    graph and backpropagating again works. ``"none"`` gives per-token losses with exact
    per-token gradients (the backward pass recomputes the logits: one more matmul per chunk).
    """

    config_class = LinearTokenCEConfig

    def compute(
        self,
        hidden: Tensor,
        weight: Tensor,
        labels: Tensor,
        *,
        bias: Tensor | None = None,
        num_items_in_batch: int | Tensor | None = None,
        weights: Tensor | None = None,
        class_weights: Tensor | None = None,
    ) -> losskit.LossOutput:
        cfg = self.config
        rows_in = check_head(hidden, weight, bias, cfg.check_inputs)
        flat, num_items, dtype, cw, opts = prepare_call(
            cfg, labels, hidden.shape[:-1], weight.shape[0], inputs_name="hidden", device=hidden.device,
            dtype=compute_dtype(hidden, weight, bias), weights=weights, num_items_in_batch=num_items_in_batch,
            class_weights=class_weights,
        )
        targets = flat.targets
        needs_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (hidden, weight, bias, weights)
        )
        rows = rows_per_chunk(weight.shape[0], cfg.chunk_size, rows_in.shape[0], LINEAR_CHUNK_ELEMENTS)
        if cfg.reduction == "none" or not needs_grad:
            ce, lse, correct = _RecomputeRows.apply(rows_in, weight, bias, targets.index, targets.valid, opts, rows)
            return token_output(
                ce, lse, correct, flat, z_loss=cfg.z_loss, reduction=cfg.reduction, num_items=num_items, class_weights=cw
            )
        scale = row_scale(flat, cfg.reduction, num_items, dtype, cw)
        if use_triton(cfg.kernel, hidden.device):
            index = torch.where(targets.valid, targets.index, -1)  # [N], -1 on ignored rows
            total, ce, lse, correct = triton_linear_total(rows_in, weight, bias, scale, index, opts, cfg.z_loss, cfg.chunk_size)
            z_sum = (scale.detach() * lse.square()).sum() * cfg.z_loss if cfg.z_loss > 0 else torch.zeros_like(total)
            parts = {"ce": (scale.detach() * ce).sum(), "z_loss": z_sum}
        else:
            total, ce_sum, z_sum, lse, correct = _FusedTotal.apply(
                rows_in, weight, bias, scale, targets.index, targets.valid, opts, cfg.z_loss, rows
            )
            parts = {"ce": ce_sum, "z_loss": z_sum}
        return losskit.LossOutput(loss=total, parts=parts, metrics=metrics(targets, lse, correct))
