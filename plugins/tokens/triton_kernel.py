"""The Triton row kernel of ``token_ce`` / ``linear_token_ce`` (imports ``triton``: load lazily).

One program per row of logits ``x [N, V]`` (Liger-Kernel's cross-entropy design, one
kernel launch for all rows). With ``z = softcap * tanh(x / softcap)`` (Gemma 2; identity
without a cap), target ``t``, smoothing ``eps``, class weights ``w`` (all ones when not
given, ``W = sum_j w_j``) and ``lse = log sum_j exp(z_j)``:

- pass 1 streams the row once with an online maximum / sum of exponentials, the sum
  ``sum_j w_j z_j`` (smoothing only) and the target logit, giving
  ``ce = (1 - eps) w_t (lse - z_t) + (eps / V) (W lse - sum_j w_j z_j)`` (PyTorch's
  ``F.cross_entropy(weight=w, label_smoothing=eps)`` per row) and
  ``row_loss = s (ce + zc lse^2)`` with the row's scale ``s`` (per-token weight /
  the ``"mean"`` divisor) and the z-loss coefficient ``zc`` (PaLM);
- pass 2 (``WRITE_GRAD``) streams it again and writes ``d row_loss / dx``:
  ``s (A p_j - B [j = t] - C w_j + 2 zc lse p_j) * (1 - (z_j / softcap)^2)`` with
  ``p = softmax(z)``, ``A = (1 - eps) w_t + eps W / V``, ``B = (1 - eps) w_t``,
  ``C = eps / V``. The gradient may alias ``x`` (each block is read before it is written).

Ignored rows (``index < 0``) read nothing and get zero loss, zero ``lse`` and a zero
gradient, so ``-inf`` logits on them (masked vocabularies) never produce NaN.
Arithmetic is fp32 (fp64 for fp64 logits) whatever the logits' dtype.
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

__all__ = ["MAX_BLOCK", "launch_config", "launch_rows"]

#: Largest block of a row held in registers at once. At 8192 with 32 warps (8 elements per
#: thread) every variant compiles for sm_90 without spills (32768, Liger-Kernel's choice,
#: spills ~500 bytes with every option on: tests/tokens/triton_compile.py); V = 151936 is
#: 19 blocks, 2.4% of the last one padding.
MAX_BLOCK = 8192


def launch_config(num_classes: int) -> tuple[int, int]:
    """``(BLOCK, num_warps)`` for rows of ``num_classes``: 8 elements per thread at full size."""
    block = min(MAX_BLOCK, triton.next_power_of_2(max(num_classes, 1)))
    return block, max(1, min(32, block // 256))


@triton.jit
def _capped(x, mask, softcap, SOFTCAP: tl.constexpr):
    """``softcap * tanh(x / softcap)`` (written with exp so -inf maps to -softcap exactly); -inf off ``mask``."""
    if SOFTCAP:
        e = tl.exp(-2.0 * tl.abs(x / softcap))  # in [0, 1]: no overflow for any |x|
        th = (1.0 - e) / (1.0 + e)
        x = tl.where(mask, tl.where(x < 0, -th, th) * softcap, -float("inf"))
    return x


@triton.jit
def _token_rows_kernel(
    x_ptr, x_stride, g_ptr, g_stride,  # logits [N, V] (read), gradient [N, V] (written; may alias)
    index_ptr, scale_ptr, cw_ptr,  # [N] target (-1: ignored), [N] row scale s, [V] class weights
    loss_ptr, ce_ptr, lse_ptr, correct_ptr,  # [N] outputs
    V, eps, zc, softcap,
    ACC: tl.constexpr, HAS_CW: tl.constexpr, SMOOTH: tl.constexpr, Z: tl.constexpr,
    SOFTCAP: tl.constexpr, WRITE_GRAD: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    t = tl.load(index_ptr + row)
    x_row = x_ptr + row * x_stride
    g_row = g_ptr + row * g_stride
    cols = tl.arange(0, BLOCK)
    if t < 0:  # ignored: nothing to read
        tl.store(loss_ptr + row, 0.0)
        tl.store(ce_ptr + row, 0.0)
        tl.store(lse_ptr + row, 0.0)
        tl.store(correct_ptr + row, 0)
        if WRITE_GRAD:
            for start in range(0, V, BLOCK):
                tl.store(g_row + start + cols, tl.zeros([BLOCK], dtype=g_ptr.dtype.element_ty), mask=start + cols < V)
        return
    zero = tl.sum(tl.zeros([BLOCK], dtype=ACC), 0)  # a scalar of the accumulator dtype
    m = zero - float("inf")  # running max; the shift below is 0 while it is -inf (no -inf - -inf)
    d = zero  # running sum of exp(z - shift)
    wz = zero  # sum_j w_j z_j (smoothing only)
    wsum = zero  # sum_j w_j (smoothing with class weights only)
    for start in range(0, V, BLOCK):
        mask = start + cols < V
        z = _capped(tl.load(x_row + start + cols, mask=mask, other=-float("inf")).to(ACC), mask, softcap, SOFTCAP)
        m_new = tl.maximum(m, tl.max(z, 0))
        shift_old = tl.where(m == -float("inf"), 0.0, m)
        shift = tl.where(m_new == -float("inf"), 0.0, m_new)
        d = d * tl.exp(shift_old - shift) + tl.sum(tl.exp(z - shift), 0)
        m = m_new
        if SMOOTH:
            z_in = tl.where(mask, z, 0.0)  # padding lanes hold -inf
            if HAS_CW:
                w = tl.load(cw_ptr + start + cols, mask=mask, other=0.0).to(ACC)
                wz += tl.sum(w * z_in, 0)
                wsum += tl.sum(w, 0)
            else:
                wz += tl.sum(z_in, 0)
    shift = tl.where(m == -float("inf"), 0.0, m)
    lse = shift + tl.log(d)
    z_t = _capped(tl.load(x_row + t).to(ACC), True, softcap, SOFTCAP)
    w_t = zero + 1.0
    if HAS_CW:
        w_t = tl.load(cw_ptr + t).to(ACC)
    ce = w_t * (lse - z_t)
    if SMOOTH:
        if not HAS_CW:
            wsum = zero + V
        ce = (1.0 - eps) * ce + (eps / V) * (wsum * lse - wz)
    s = tl.load(scale_ptr + row).to(ACC)
    row_loss = ce
    if Z:
        row_loss += zc * lse * lse
    tl.store(loss_ptr + row, s * row_loss)
    tl.store(ce_ptr + row, ce)
    tl.store(lse_ptr + row, lse)
    tl.store(correct_ptr + row, (z_t >= m).to(tl.int8))
    if WRITE_GRAD:
        a = w_t
        if SMOOTH:
            a = (1.0 - eps) * w_t + eps * wsum / V
        a = s * a
        if Z:
            a += s * 2.0 * zc * lse
        b = s * (1.0 - eps) * w_t
        c = s * eps / V
        for start in range(0, V, BLOCK):
            offs = start + cols
            mask = offs < V
            x = tl.load(x_row + offs, mask=mask, other=0.0).to(ACC)  # padding lanes: finite, never stored
            z = _capped(x, True, softcap, SOFTCAP)
            g = a * tl.exp(z - lse) - tl.where(offs == t, b, 0.0)
            if SMOOTH:
                if HAS_CW:
                    g -= c * tl.load(cw_ptr + offs, mask=mask, other=0.0).to(ACC)
                else:
                    g -= c
            if SOFTCAP:
                r = z / softcap
                g = g * (1.0 - r * r)
            tl.store(g_row + offs, g.to(g_ptr.dtype.element_ty), mask=mask)


def launch_rows(
    x: Tensor,
    grad: Tensor | None,
    index: Tensor,
    scale: Tensor,
    class_weights: Tensor | None,
    outputs: tuple[Tensor, Tensor, Tensor, Tensor],
    *,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
) -> None:
    """Run the row kernel over ``x [N, V]`` (unit stride along V).

    Args:
        x: logits rows; ``grad`` (same shape, unit stride along V, may be ``x`` itself)
            receives ``d row_loss / dx`` when given.
        index: ``[N]`` int64 targets, -1 on ignored rows.
        scale: ``[N]`` row scale ``s`` in the compute dtype.
        class_weights: ``[V]`` per-class weights or None.
        outputs: ``(row_loss, ce, lse, correct)``, each ``[N]``: compute dtype x3 and int8.
    """
    n, v = x.shape
    row_loss, ce, lse, correct = outputs
    block, num_warps = launch_config(v)
    acc = tl.float64 if ce.dtype.is_floating_point and ce.element_size() == 8 else tl.float32
    g = x if grad is None else grad
    _token_rows_kernel[(n,)](
        x, x.stride(0), g, g.stride(0),
        index, scale, scale if class_weights is None else class_weights,
        row_loss, ce, lse, correct,
        v, label_smoothing, z_loss, 1.0 if softcap is None else softcap,
        ACC=acc, HAS_CW=class_weights is not None, SMOOTH=label_smoothing > 0, Z=z_loss > 0,
        SOFTCAP=softcap is not None, WRITE_GRAD=grad is not None, BLOCK=block,
        num_warps=num_warps,
    )
