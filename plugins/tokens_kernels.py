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

__all__ = ["RowStats", "Targets", "chunk_stats", "compute_dtype", "logit_grad_", "rows_per_chunk"]

#: Elements of one chunk buffer of ``token_ce`` (32 MiB in fp32): elementwise work only.
DEFAULT_CHUNK_ELEMENTS = 1 << 23
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
    correct: Tensor  # bool: argmax == target on a supervised row
    sum_exp: Tensor  # sum_j exp(z_ij - max_j z_ij)


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """fp32, or fp64 when an input is fp64 (fp16/bf16 are computed in fp32)."""
    dtype = torch.float32
    for t in tensors:
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def rows_per_chunk(
    num_classes: int, chunk_size: int | None, num_rows: int, budget: int = DEFAULT_CHUNK_ELEMENTS
) -> int:
    """Rows per chunk: ``chunk_size`` if given, else at most ``budget`` elements, in equal chunks."""
    if chunk_size is not None:
        return max(1, min(chunk_size, num_rows))
    most = max(1, budget // max(num_classes, 1))
    chunks = -(-num_rows // most)  # ceil
    return max(1, -(-num_rows // max(chunks, 1)))


def chunk_stats(z: Tensor, buf: Tensor, targets: Targets, label_smoothing: float) -> RowStats:
    """Cross-entropy, log-sum-exp and accuracy of logits rows ``z [n, V]``.

    Args:
        z: logits of the chunk, in the compute dtype or lower (read only unless ``buf is z``).
        buf: ``[n, V]`` compute-dtype scratch; on return it holds ``exp(z - max_j z)``.
            Passing ``buf=z`` works in place.
        targets: the chunk's targets.
        label_smoothing: ``eps`` in [0, 1], as in ``F.cross_entropy``.
    """
    top, argmax = z.max(dim=-1)  # [n]
    top = top.to(buf.dtype)
    # a row of all -inf has no finite maximum; shifting by 0 keeps it NaN-free
    shift = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    z_target = z.gather(1, targets.index[:, None]).squeeze(1).to(buf.dtype)  # [n]
    z_mean = z.sum(dim=-1, dtype=buf.dtype) / z.shape[-1] if label_smoothing > 0 else None
    torch.sub(z, shift[:, None], out=buf).exp_()  # [n, V] = exp(z - max)
    sum_exp = buf.sum(dim=-1)
    lse = shift + sum_exp.log()
    ce = lse - z_target
    if z_mean is not None:
        ce = (1.0 - label_smoothing) * ce + label_smoothing * (lse - z_mean)
    zero = torch.zeros((), dtype=ce.dtype, device=ce.device)
    ce = torch.where(targets.valid, ce, zero)
    correct = (argmax == targets.index) & targets.valid
    return RowStats(ce, lse, correct, sum_exp)


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
