"""Per-box arithmetic of the fused ``bbox`` kernel (Triton ``@jit`` helpers, inlined by the compiler).

Every helper works on blocks of boxes held as one fp32 tensor per coordinate (``[BLOCK]``)
and repeats, operation for operation, the PyTorch path
(:mod:`losskit_plugins.boxes.iou`, torchvision.ops formulas), so values and gradients
agree to float32 rounding. ``max``/``min`` ties split the gradient in halves, as
``torch.maximum`` does. Imported only where a Triton path runs.
"""

from __future__ import annotations

import triton
import triton.language as tl

HALF_PI = tl.constexpr(1.5707963267948966)
QUARTER_PI = tl.constexpr(0.7853981633974483)
PI = tl.constexpr(3.141592653589793)
V_SCALE = tl.constexpr(0.4052847345693511)  # CIoU's 4 / pi^2


@triton.jit
def load_boxes(ptr, rows, mask, BLOCK: tl.constexpr):
    """Four ``[BLOCK]`` fp32 coordinate columns of ``[N, 4]`` boxes (one 16-byte load per box)."""
    tile = tl.load(ptr + rows[:, None] * 4 + tl.arange(0, 4)[None, :], mask=mask[:, None], other=0.0)
    first, second = tl.split(tl.reshape(tile.to(tl.float32), (BLOCK, 2, 2)))  # (c0, c2), (c1, c3)
    c0, c2 = tl.split(first)
    c1, c3 = tl.split(second)
    return c0, c1, c2, c3


@triton.jit
def store_boxes(ptr, rows, mask, c0, c1, c2, c3, BLOCK: tl.constexpr):
    """Write four ``[BLOCK]`` columns as ``[N, 4]`` rows (the inverse of :func:`load_boxes`)."""
    tile = tl.reshape(tl.join(tl.join(c0, c2), tl.join(c1, c3)), (BLOCK, 4))
    tl.store(ptr + rows[:, None] * 4 + tl.arange(0, 4)[None, :], tile, mask=mask[:, None])


@triton.jit
def to_corners(a, size, FMT: tl.constexpr):
    """One axis in ``FMT`` (0 xyxy: (x1, x2); 1 xywh: (x, w); 2 cxcywh: (cx, w)) to (x1, x2), as box_convert."""
    if FMT == 0:
        return a, size
    elif FMT == 1:
        return a, a + size
    else:
        return a - 0.5 * size, a + 0.5 * size


@triton.jit
def from_corners_grad(d1, d2, FMT: tl.constexpr):
    """The backward of :func:`to_corners`: gradients w.r.t. the axis's two raw numbers."""
    if FMT == 0:
        return d1, d2
    elif FMT == 1:
        return d1 + d2, d2
    else:
        return d1 + d2, 0.5 * (d2 - d1)


@triton.jit
def clamp_side(lo, hi, CLAMP: tl.constexpr):
    """``degenerate="clamp"``: an inverted side collapses to its centre; returns (lo, hi, inverted)."""
    inverted = hi < lo
    if CLAMP:
        centre = lo * 0.5 + hi * 0.5
        lo = tl.where(inverted, centre, lo)
        hi = tl.where(inverted, centre, hi)
    return lo, hi, inverted


@triton.jit
def clamp_side_grad(d_lo, d_hi, inverted, CLAMP: tl.constexpr):
    """The backward of :func:`clamp_side`: a collapsed side passes half of both gradients to each end."""
    if CLAMP:
        mean = 0.5 * (d_lo + d_hi)
        d_lo = tl.where(inverted, mean, d_lo)
        d_hi = tl.where(inverted, mean, d_hi)
    return d_lo, d_hi


@triton.jit
def coordinate_term(p, t, beta, SMOOTH: tl.constexpr):
    """``|p - t|`` (or smooth L1 with transition ``beta``) of one coordinate, and its derivative in ``p``."""
    d = p - t
    z = tl.abs(d)
    sign = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))
    if SMOOTH:
        small = z < beta
        return tl.where(small, 0.5 * z * z / beta, z - 0.5 * beta), tl.where(small, d / beta, sign)
    else:
        return z, sign


@triton.jit
def max_share(p, t):
    """Weight of ``p`` in ``max(p, t)``: 1, 1/2 at a tie (as ``torch.maximum``'s backward), 0."""
    return tl.where(p > t, 1.0, tl.where(p == t, 0.5, 0.0))


@triton.jit
def _atan_unit(a):
    """``atan(a)`` for ``a`` in [0, 1]: Cephes' ``atanf`` reduction and polynomial (about 2 ulp in fp32)."""
    big = a > 0.41421356237309503  # tan(pi / 8)
    x = tl.where(big, (a - 1.0) / (a + 1.0), a)
    z = x * x
    y = (((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z - 3.33329491539e-1) * z * x + x
    return tl.where(big, y + QUARTER_PI, y)


@triton.jit
def aspect_angle(w, h):
    """``atan2(w, h)`` (``atan(w / h)`` for ``h > 0``) and its derivatives in ``w`` and ``h``.

    A point box (``w = h = 0``) counts as square (pi / 4) and gets no gradient, as the
    PyTorch path. The derivatives ``h / (w^2 + h^2)`` and ``-w / (w^2 + h^2)`` are taken
    with both sides divided by the larger one, so nothing overflows on the way.
    """
    aw = tl.abs(w)
    ah = tl.abs(h)
    m = tl.maximum(aw, ah)
    point = m == 0
    safe = tl.where(point, 1.0, m)
    r = _atan_unit(tl.minimum(aw, ah) / safe)
    r = tl.where(aw > ah, HALF_PI - r, r)
    r = tl.where(h < 0, PI - r, r)
    r = tl.where(w < 0, -r, r)
    wn = w / safe
    hn = h / safe
    q = (wn * wn + hn * hn) * safe
    q = tl.where(point, 1.0, q)
    return tl.where(point, QUARTER_PI, r), tl.where(point, 0.0, hn / q), tl.where(point, 0.0, -wn / q)
