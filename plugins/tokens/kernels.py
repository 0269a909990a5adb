"""Row-chunk kernels shared by ``token_ce`` and ``linear_token_ce``.

Both losses work on a chunk of rows of logits ``z [n, V]`` at a time, in a reusable
buffer, so that no extra ``[N, V]`` tensor is ever allocated (for ``token_ce`` the
logits exist already; for ``linear_token_ce`` only the chunk does). Per row ``i`` with
target ``t_i``, smoothing ``eps`` and ``lse_i = log sum_j exp(z_ij)``:

- cross-entropy (PyTorch's ``F.cross_entropy`` with ``weight=w`` and ``label_smoothing``;
  ``w`` all ones when no class weights are given, ``W = sum_j w_j``):
  ``ce_i = (1 - eps) w_t (lse_i - z_i,t) + (eps / V) (W lse_i - sum_j w_j z_ij)``, 0 for ignored rows;
- its gradient, given upstream gradients ``g_ce`` (of ``ce``) and ``g_lse`` (of ``lse``):
  ``dz_ij = p_ij (g_ce_i A_i + g_lse_i) - g_ce_i ((1 - eps) w_t [j = t_i] + (eps / V) w_j)``
  with ``p = softmax(z)`` and ``A_i = (1 - eps) w_t + eps W / V``;
- with a final-logit cap (Gemma 2) the logits are ``z = c tanh(x / c)`` and the gradient
  of ``x`` is ``dz (1 - (z / c)^2)``.

Everything here is plain PyTorch, runs on CPU and GPU and never synchronises with the host.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "RowOptions",
    "RowStats",
    "Targets",
    "chunk_stats",
    "chunk_stats_readonly",
    "logit_grad_",
    "rows_per_chunk",
    "softmax_into",
]

#: Elements of one chunk buffer of ``token_ce`` (8 MiB in fp32): elementwise work only,
#: small enough that a chunk is still in cache for the passes after the first.
DEFAULT_CHUNK_ELEMENTS = 1 << 21
#: Elements of one chunk of ``linear_token_ce`` at most (192 MiB in fp32; 331 tokens at
#: V = 151936): large enough that the matmuls (and the read-modify-write of ``grad_weight``
#: per chunk) run near full speed on CPU, small against one 1.2 GB copy of Qwen2 logits.
LINEAR_CHUNK_ELEMENTS = 48 << 20


class Targets(NamedTuple):
    """Labels of a row block: ``index [n]`` (ignored rows point at class 0) and ``valid [n]`` (bool)."""

    index: Tensor
    valid: Tensor

    def rows(self, start: int, stop: int) -> Targets:
        """The targets of rows ``start:stop``."""
        return Targets(self.index[start:stop], self.valid[start:stop])


class RowOptions(NamedTuple):
    """What shapes each row's loss besides its target."""

    label_smoothing: float = 0.0  # eps in [0, 1], as in F.cross_entropy
    class_weights: Tensor | None = None  # [V] in the compute dtype (F.cross_entropy's weight)
    softcap: float | None = None  # Gemma 2's final-logit cap c: z = c tanh(x / c)

    def capped(self, x: Tensor) -> Tensor:
        """``c tanh(x / c)`` out of place (``x`` itself without a cap)."""
        return x if self.softcap is None else torch.tanh(x / self.softcap).mul_(self.softcap)

    def cap_(self, z: Tensor) -> Tensor:
        """Cap the compute-dtype buffer ``z`` in place."""
        return z if self.softcap is None else z.div_(self.softcap).tanh_().mul_(self.softcap)

    def cap_factor(self, z: Tensor) -> Tensor | None:
        """``1 - (z / c)^2`` for capped logits ``z``: d z / d x (None without a cap)."""
        return None if self.softcap is None else 1.0 - (z / self.softcap).square_()


class RowStats(NamedTuple):
    """Per-row results of :func:`chunk_stats`, each ``[n]``."""

    ce: Tensor  # cross-entropy, 0 on ignored rows
    lse: Tensor  # log-sum-exp of the row (log Z)
    correct: Tensor  # bool: the target's logit is the row's maximum, on a supervised row
    sum_exp: Tensor  # sum_j exp(z_ij - max_j z_ij)



def rows_per_chunk(
    num_classes: int, chunk_size: int | None, num_rows: int, budget: int = DEFAULT_CHUNK_ELEMENTS
) -> int:
    """Rows per chunk: ``chunk_size`` if given, else at most ``budget`` elements, in equal chunks."""
    if chunk_size is not None:
        return max(1, min(chunk_size, num_rows))
    most = max(1, budget // max(num_classes, 1))
    chunks = -(-num_rows // most)  # ceil
    return max(1, -(-num_rows // max(chunks, 1)))


def _smooth_term(z: Tensor, opts: RowOptions) -> Tensor | None:
    """``sum_j w_j z_ij / V`` per row of ``z [n, V]`` (the mean logit without class weights); None without smoothing."""
    if opts.label_smoothing == 0:
        return None
    return z.mean(dim=-1) if opts.class_weights is None else (z @ opts.class_weights) / z.shape[1]


def _row_results(
    lse: Tensor, z_target: Tensor, z_smooth: Tensor | None, is_max: Tensor, targets: Targets, opts: RowOptions
) -> tuple[Tensor, Tensor]:
    """Per-row ``(ce, correct)`` from the log-sum-exp, target logit, smoothing term and whether the target is the max."""
    ce = lse - z_target
    w = opts.class_weights
    if w is not None:
        ce = w[targets.index] * ce
    if z_smooth is not None:
        eps = opts.label_smoothing
        mean_w = 1.0 if w is None else w.mean()
        ce = (1.0 - eps) * ce + eps * (mean_w * lse - z_smooth)
    zero = torch.zeros((), dtype=ce.dtype, device=ce.device)
    ce = torch.where(targets.valid, ce, zero)
    correct = is_max & targets.valid
    return ce, correct


def chunk_stats(z: Tensor, targets: Targets, opts: RowOptions) -> RowStats:
    """Cross-entropy, log-sum-exp and accuracy of (already capped) logits rows ``z [n, V]``, destructively.

    Args:
        z: logits of the chunk in the compute dtype; on return it holds ``exp(z - max_j z)``
            (with ``RowStats.sum_exp`` its row sums).
        targets: the chunk's targets.
        opts: smoothing and class weights (the cap is the caller's).
    """
    top = z.amax(dim=-1)  # [n]
    # a row of all -inf has no finite maximum; shifting by 0 keeps it NaN-free
    shift = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    z_target = z.gather(1, targets.index[:, None]).squeeze(1)  # [n]
    z_smooth = _smooth_term(z, opts)
    z.sub_(shift[:, None]).exp_()  # [n, V] = exp(z - max)
    sum_exp = z.sum(dim=-1)
    lse = shift + sum_exp.log()
    ce, correct = _row_results(lse, z_target, z_smooth, z_target >= top, targets, opts)
    return RowStats(ce, lse, correct, sum_exp)


def upcast_capped(x: Tensor, dtype: torch.dtype, opts: RowOptions) -> Tensor:
    """The chunk ``x [n, V]`` in ``dtype``, capped (a copy only for fp16/bf16 or a cap)."""
    zc = x if x.dtype == dtype else x.to(dtype)  # [n, V] upcast chunk (fp16/bf16 only)
    return opts.capped(zc)


def chunk_stats_readonly(x: Tensor, buf: Tensor, targets: Targets, opts: RowOptions) -> RowStats:
    """:func:`chunk_stats` of the logits chunk ``x`` (capped here) leaving ``x`` intact; ``buf [n, V]`` (compute dtype) is scratch.

    Uses PyTorch's fused per-row ``log_softmax`` kernel (one read and one write of the
    chunk); ``RowStats.sum_exp`` is all ones (the log-sum-exp is exact without it).
    """
    zc = upcast_capped(x, buf.dtype, opts)
    torch.ops.aten._log_softmax.out(zc, -1, False, out=buf)  # [n, V] = log softmax(z)
    z_target = zc.gather(1, targets.index[:, None]).squeeze(1)
    top_logp, top = buf.max(dim=-1)  # on the freshly written, cache-warm chunk
    # log Z = z_j - log p_j at the row's argmax j: finite whenever the row's maximum is,
    # even where the target logit is -inf (a masked vocabulary; ignored rows point at class 0)
    lse = zc.gather(1, top[:, None]).squeeze(1) - top_logp
    is_max = buf.gather(1, targets.index[:, None]).squeeze(1) >= top_logp  # log p_t is the row's max
    ce, correct = _row_results(lse, z_target, _smooth_term(zc, opts), is_max, targets, opts)
    return RowStats(ce, lse, correct, torch.ones_like(lse))


def softmax_into(z: Tensor, out: Tensor) -> Tensor:
    """``out[:] = softmax(z, -1)`` with PyTorch's fused per-row kernel; ``out`` may be a row slice."""
    return torch.ops.aten._softmax.out(z, -1, False, out=out)


def logit_grad_(
    probs: Tensor,
    targets: Targets,
    g_ce: Tensor | None,
    g_lse: Tensor | None,
    opts: RowOptions,
    *,
    sum_exp: Tensor | None = None,
    cap_factor: Tensor | None = None,
) -> Tensor:
    """Turn ``probs [n, V]`` in place into the gradient of the chunk's logits.

    Args:
        probs: ``softmax(z)`` rows, or ``exp(z - max)`` rows with ``sum_exp`` given.
        targets: the chunk's targets.
        g_ce: ``[n]`` upstream gradient of the per-row cross-entropy (None: zero).
        g_lse: ``[n]`` upstream gradient of the per-row log-sum-exp (None: zero).
        opts: smoothing and class weights, as in :func:`chunk_stats`.
        sum_exp: row sums that normalise ``probs`` (None: already normalised).
        cap_factor: ``[n, V]`` d z / d x of a final-logit cap (None: no cap).
    """
    n, v = probs.shape
    eps, w = opts.label_smoothing, opts.class_weights
    zeros = torch.zeros(n, dtype=probs.dtype, device=probs.device)
    g_ce = zeros if g_ce is None else torch.where(targets.valid, g_ce.to(probs.dtype), zeros)
    g_target = g_ce if w is None else g_ce * w[targets.index]  # [n] g_ce w_t
    scale = (1.0 - eps) * g_target + (eps * g_ce if w is None else (eps * w.mean()) * g_ce)
    if g_lse is not None:
        scale = scale + g_lse.to(probs.dtype)
    if sum_exp is not None:
        scale = scale / sum_exp
    probs.mul_(scale[:, None])
    probs.scatter_add_(1, targets.index[:, None], -(1.0 - eps) * g_target[:, None])
    if eps > 0:
        if w is None:
            probs.sub_((eps / v) * g_ce[:, None])
        else:
            probs.addr_(g_ce, w, alpha=-eps / v)
    if cap_factor is not None:
        probs.mul_(cap_factor)
    return probs
