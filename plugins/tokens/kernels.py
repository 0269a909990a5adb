"""Row-chunk kernels shared by ``token_ce`` and ``linear_token_ce``.

Both losses work on a chunk of rows of logits ``z [n, V]`` at a time, in a reusable
buffer, so that no extra ``[N, V]`` tensor is ever allocated (for ``token_ce`` the
logits exist already; for ``linear_token_ce`` only the chunk does). Per row ``i`` with
target ``t_i``, smoothing ``eps`` and ``lse_i = log sum_j exp(z_ij)``:

- cross-entropy (PyTorch's ``F.cross_entropy`` with ``label_smoothing``):
  ``ce_i = (1 - eps) (lse_i - z_i,t) + eps (lse_i - mean_j z_ij)``, 0 for ignored rows;
- its gradient, given upstream gradients ``g_ce`` (of ``ce``) and ``g_lse`` (of ``lse``):
  ``dz_ij = softmax(z_i)_j (g_ce_i + g_lse_i) - g_ce_i ((1 - eps) [j = t_i] + eps / V)``.

Everything here is plain PyTorch, runs on CPU and GPU and never synchronises with the host.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
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


def _row_results(
    lse: Tensor, z_target: Tensor, z_mean: Tensor | None, is_max: Tensor, targets: Targets, label_smoothing: float
) -> tuple[Tensor, Tensor]:
    """Per-row ``(ce, correct)`` from the log-sum-exp, target logit, mean logit and whether the target is the max."""
    ce = lse - z_target
    if z_mean is not None:
        ce = (1.0 - label_smoothing) * ce + label_smoothing * (lse - z_mean)
    zero = torch.zeros((), dtype=ce.dtype, device=ce.device)
    ce = torch.where(targets.valid, ce, zero)
    correct = is_max & targets.valid
    return ce, correct


def chunk_stats(z: Tensor, targets: Targets, label_smoothing: float) -> RowStats:
    """Cross-entropy, log-sum-exp and accuracy of logits rows ``z [n, V]``, destructively.

    Args:
        z: logits of the chunk in the compute dtype; on return it holds ``exp(z - max_j z)``
            (with ``RowStats.sum_exp`` its row sums).
        targets: the chunk's targets.
        label_smoothing: ``eps`` in [0, 1], as in ``F.cross_entropy``.
    """
    top = z.amax(dim=-1)  # [n]
    # a row of all -inf has no finite maximum; shifting by 0 keeps it NaN-free
    shift = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    z_target = z.gather(1, targets.index[:, None]).squeeze(1)  # [n]
    z_mean = z.mean(dim=-1) if label_smoothing > 0 else None
    z.sub_(shift[:, None]).exp_()  # [n, V] = exp(z - max)
    sum_exp = z.sum(dim=-1)
    lse = shift + sum_exp.log()
    ce, correct = _row_results(lse, z_target, z_mean, z_target >= top, targets, label_smoothing)
    return RowStats(ce, lse, correct, sum_exp)


def chunk_stats_readonly(z: Tensor, buf: Tensor, targets: Targets, label_smoothing: float) -> RowStats:
    """:func:`chunk_stats` leaving ``z`` intact; ``buf [n, V]`` (compute dtype) is scratch.

    Uses PyTorch's fused per-row ``log_softmax`` kernel (one read and one write of the
    chunk); ``RowStats.sum_exp`` is all ones (the log-sum-exp is exact without it).
    """
    zc = z if z.dtype == buf.dtype else z.to(buf.dtype)  # [n, V] upcast chunk (fp16/bf16 only)
    torch.ops.aten._log_softmax.out(zc, -1, False, out=buf)  # [n, V] = log softmax(z)
    z_target = zc.gather(1, targets.index[:, None]).squeeze(1)
    logp_target = buf.gather(1, targets.index[:, None]).squeeze(1)
    lse = z_target - logp_target  # z_t - log p_t = log Z
    z_mean = zc.mean(dim=-1) if label_smoothing > 0 else None
    is_max = logp_target >= buf.amax(dim=-1)  # on the freshly written, cache-warm chunk
    ce, correct = _row_results(lse, z_target, z_mean, is_max, targets, label_smoothing)
    return RowStats(ce, lse, correct, torch.ones_like(lse))


def softmax_into(z: Tensor, out: Tensor) -> Tensor:
    """``out[:] = softmax(z, -1)`` with PyTorch's fused per-row kernel; ``out`` may be a row slice."""
    zc = z if z.dtype == out.dtype else z.to(out.dtype)
    return torch.ops.aten._softmax.out(zc, -1, False, out=out)


def logit_grad_(
    probs: Tensor,
    targets: Targets,
    g_ce: Tensor | None,
    g_lse: Tensor | None,
    label_smoothing: float,
    *,
    sum_exp: Tensor | None = None,
) -> Tensor:
    """Turn ``probs [n, V]`` in place into the gradient of the chunk's logits.

    Args:
        probs: ``softmax(z)`` rows, or ``exp(z - max)`` rows with ``sum_exp`` given.
        targets: the chunk's targets.
        g_ce: ``[n]`` upstream gradient of the per-row cross-entropy (None: zero).
        g_lse: ``[n]`` upstream gradient of the per-row log-sum-exp (None: zero).
        label_smoothing: ``eps`` as in :func:`chunk_stats`.
        sum_exp: row sums that normalise ``probs`` (None: already normalised).
    """
    n = probs.shape[0]
    zeros = torch.zeros(n, dtype=probs.dtype, device=probs.device)
    g_ce = zeros if g_ce is None else torch.where(targets.valid, g_ce.to(probs.dtype), zeros)
    scale = g_ce if g_lse is None else g_ce + g_lse.to(probs.dtype)
    if sum_exp is not None:
        scale = scale / sum_exp
    probs.mul_(scale[:, None])
    probs.scatter_add_(1, targets.index[:, None], -(1.0 - label_smoothing) * g_ce[:, None])
    if label_smoothing > 0:
        probs.sub_((label_smoothing / probs.shape[1]) * g_ce[:, None])
    return probs
