"""The fused ``bbox`` kernels: one Triton pass forward, one backward that recomputes.

The forward reads ``pred`` and ``target`` once and writes, per block of boxes, the sums
of the (weighted) coordinate term, IoU-family term and plain IoU (or, for
``reduction="none"``, the per-box terms); it saves nothing for the backward but the
inputs. The backward recomputes each box and writes the gradients of ``pred``,
``target`` and ``weights``. ``KIND``: 0 none, 1 IoU, 2 GIoU, 3 DIoU, 4 CIoU.
"""

from __future__ import annotations

import triton
import triton.language as tl

from losskit_plugins.boxes.triton_math import (
    V_SCALE,
    aspect_angle,
    clamp_side,
    clamp_side_grad,
    coordinate_term,
    from_corners_grad,
    load_boxes,
    max_share,
    store_boxes,
    to_corners,
)


@triton.jit
def _axis(pa, pb, ta, tb, FMT: tl.constexpr, CLAMP: tl.constexpr):
    """One axis of both boxes: corners, own sides, intersection and enclosing extents, centre gap."""
    p1, p2 = to_corners(pa, pb, FMT)
    t1, t2 = to_corners(ta, tb, FMT)
    p1, p2, p_inv = clamp_side(p1, p2, CLAMP)
    t1, t2, t_inv = clamp_side(t1, t2, CLAMP)
    inter = tl.maximum(tl.minimum(p2, t2) - tl.maximum(p1, t1), 0.0)
    enclosing = tl.maximum(p2, t2) - tl.minimum(p1, t1)
    gap = (p2 + p1) / 2 - (t1 + t2) / 2
    return p1, p2, t1, t2, p_inv, t_inv, p2 - p1, t2 - t1, inter, enclosing, gap


@triton.jit
def _box(p0, p1, p2, p3, t0, t1, t2, t3, eps, FMT: tl.constexpr, CLAMP: tl.constexpr, KIND: tl.constexpr):
    """The per-box quantities both passes need; ``term`` is the IoU-family loss (0 for identical boxes)."""
    px1, px2, tx1, tx2, pxi, txi, wp, wt, iw, cw, dx = _axis(p0, p2, t0, t2, FMT, CLAMP)
    py1, py2, ty1, ty2, pyi, tyi, hp, ht, ih, ch, dy = _axis(p1, p3, t1, t3, FMT, CLAMP)
    same = (px1 == tx1) & (py1 == ty1) & (px2 == tx2) & (py2 == ty2)
    inter = iw * ih
    union = wp * hp + wt * ht - inter
    u_eps = union + eps
    iou = tl.where(same, 1.0, inter / u_eps)
    area_c = cw * ch
    c_eps = area_c + eps
    term = 1 - iou
    if KIND == 2:
        term = 1 - (inter / u_eps - (area_c - union) / c_eps)
    term = tl.where(same, 0.0, term)
    diag = cw * cw + ch * ch + eps
    rho2 = dx * dx + dy * dy
    alpha = tl.zeros_like(iou)
    v = tl.zeros_like(iou)
    if KIND >= 3:
        term += rho2 / diag
    if KIND == 4:
        ang_p, _, _ = aspect_angle(wp, hp)
        ang_t, _, _ = aspect_angle(wt, ht)
        v = V_SCALE * (ang_t - ang_p) * (ang_t - ang_p)
        alpha = v / (1 - iou + v + eps)
        term += alpha * v
    return (term, iou, same, inter, union, u_eps, area_c, c_eps, diag, rho2, alpha, v,
            px1, px2, tx1, tx2, pxi, txi, wp, wt, iw, cw, dx,
            py1, py2, ty1, ty2, pyi, tyi, hp, ht, ih, ch, dy)


@triton.jit
def _coords(p0, p1, p2, p3, t0, t1, t2, t3, beta, SMOOTH: tl.constexpr):
    """Sum over the four raw coordinates of the coordinate term, and its four derivatives in ``pred``."""
    v0, d0 = coordinate_term(p0, t0, beta, SMOOTH)
    v1, d1 = coordinate_term(p1, t1, beta, SMOOTH)
    v2, d2 = coordinate_term(p2, t2, beta, SMOOTH)
    v3, d3 = coordinate_term(p3, t3, beta, SMOOTH)
    return v0 + v1 + v2 + v3, d0, d1, d2, d3


@triton.jit
def _axis_grads(p1, p2, t1, t2, g_inter, g_enc, g_side_p, g_side_t, g_gap):
    """Gradients of the four corners of one axis, given those of the extents built from them."""
    s1 = max_share(p1, t1)  # pred's share of max(p1, t1) (intersection start); 1 - s1 of min (enclosing start)
    s2 = max_share(p2, t2)  # pred's share of max(p2, t2) (enclosing end); 1 - s2 of min (intersection end)
    dp1 = -(g_side_p + g_inter * s1) - g_enc * (1 - s1) + g_gap
    dp2 = g_side_p + g_inter * (1 - s2) + g_enc * s2 + g_gap
    dt1 = -(g_side_t + g_inter * (1 - s1)) - g_enc * s1 - g_gap
    dt2 = g_side_t + g_inter * s2 + g_enc * (1 - s2) - g_gap
    return dp1, dp2, dt1, dt2


@triton.jit
def bbox_forward(pred_ptr, target_ptr, weight_ptr, l1_ptr, term_ptr, partial_ptr, n, eps, beta,
                 FMT: tl.constexpr, CLAMP: tl.constexpr, KIND: tl.constexpr, L1: tl.constexpr,
                 SMOOTH: tl.constexpr, HAS_W: tl.constexpr, PER_BOX: tl.constexpr, BLOCK: tl.constexpr):
    """Per block: ``partial[pid] = (sum l1 * w, sum term * w, sum iou)``; per box too when ``PER_BOX``."""
    pid = tl.program_id(0)
    rows = pid * BLOCK + tl.arange(0, BLOCK)
    mask = rows < n
    p0, p1, p2, p3 = load_boxes(pred_ptr, rows, mask, BLOCK)
    t0, t1, t2, t3 = load_boxes(target_ptr, rows, mask, BLOCK)
    out = _box(p0, p1, p2, p3, t0, t1, t2, t3, eps, FMT, CLAMP, KIND)
    term = out[0]
    iou = out[1]
    w = tl.full((BLOCK,), 1.0, tl.float32)
    if HAS_W:
        w = tl.load(weight_ptr + rows, mask=mask, other=0.0).to(tl.float32)
    l1 = tl.zeros_like(iou)
    if L1:
        l1, _, _, _, _ = _coords(p0, p1, p2, p3, t0, t1, t2, t3, beta, SMOOTH)
        l1 = l1 * w
    term = term * w
    if PER_BOX:
        tl.store(l1_ptr + rows, l1, mask=mask)
        tl.store(term_ptr + rows, term, mask=mask)
    tl.store(partial_ptr + pid * 3, tl.sum(tl.where(mask, l1, 0.0)))
    tl.store(partial_ptr + pid * 3 + 1, tl.sum(tl.where(mask, term, 0.0)))
    tl.store(partial_ptr + pid * 3 + 2, tl.sum(tl.where(mask, iou, 0.0)))


@triton.jit
def _overlap_grads(out, g, KIND: tl.constexpr):
    """Gradients of the extents (intersection, enclosing, own sides, centre gaps) given ``g = dL/d term``.

    Term for term the backward of ``_OverlapLoss`` (IoU, GIoU) plus autograd's on the
    DIoU / CIoU penalties (CIoU's ``alpha`` held constant).
    """
    (term, iou, same, inter, union, u_eps, area_c, c_eps, diag, rho2, alpha, v,
     px1, px2, tx1, tx2, pxi, txi, wp, wt, iw, cw, dx,
     py1, py2, ty1, ty2, pyi, tyi, hp, ht, ih, ch, dy) = out
    go = tl.where(same, 0.0, g)
    d_union = go * ((inter / u_eps) / u_eps)
    d_area_c = tl.zeros_like(go)
    if KIND == 2:
        d_enc = go / c_eps
        d_union -= d_enc
        d_area_c = d_enc - go * (((area_c - union) / c_eps) / c_eps)
    d_inter = tl.where(inter <= 0, 0.0, -(go / u_eps) - d_union)
    g_cw = d_area_c * ch
    g_ch = d_area_c * cw
    g_dx = tl.zeros_like(go)
    g_dy = tl.zeros_like(go)
    if KIND >= 3:
        d_rho2 = g / diag
        d_diag = -(g * (rho2 / diag)) / diag
        g_cw += d_diag * 2 * cw
        g_ch += d_diag * 2 * ch
        g_dx = d_rho2 * dx  # d rho2 / d dx = 2 dx, d dx / d corner = 1/2
        g_dy = d_rho2 * dy
    gwp = d_union * hp
    ghp = d_union * wp
    gwt = d_union * ht
    ght = d_union * wt
    if KIND == 4:
        ang_p, aw_p, ah_p = aspect_angle(wp, hp)
        ang_t, aw_t, ah_t = aspect_angle(wt, ht)
        d_ang_t = g * alpha * V_SCALE * 2 * (ang_t - ang_p)  # d(alpha v)/d angle_t; angle_p gets its negative
        gwp -= d_ang_t * aw_p
        ghp -= d_ang_t * ah_p
        gwt += d_ang_t * aw_t
        ght += d_ang_t * ah_t
    return d_inter * ih, d_inter * iw, g_cw, g_ch, gwp, ghp, gwt, ght, g_dx, g_dy


@triton.jit
def bbox_backward(pred_ptr, target_ptr, weight_ptr, g_l1_ptr, g_l1_stride, g_term_ptr, g_term_stride,
                  d_pred_ptr, d_target_ptr, d_weight_ptr, n, eps, beta, P_MAX, T_MAX,
                  FMT: tl.constexpr, CLAMP: tl.constexpr, KIND: tl.constexpr, L1: tl.constexpr,
                  SMOOTH: tl.constexpr, HAS_W: tl.constexpr, NEED_P: tl.constexpr, NEED_T: tl.constexpr,
                  NEED_W: tl.constexpr, BLOCK: tl.constexpr):
    """Recompute each box and write ``d pred``, ``d target`` (saturated at ``P_MAX``/``T_MAX``), ``d weights``.

    ``g_l1``/``g_term``: the gradients of the two outputs of the forward, read with
    stride 0 (a reduced output) or 1 (``reduction="none"``). Long because the chain rule
    of the whole box loss is spelled out once here; the per-axis work is in helpers.
    """
    pid = tl.program_id(0)
    rows = pid * BLOCK + tl.arange(0, BLOCK)
    mask = rows < n
    p0, p1, p2, p3 = load_boxes(pred_ptr, rows, mask, BLOCK)
    t0, t1, t2, t3 = load_boxes(target_ptr, rows, mask, BLOCK)
    w = tl.full((BLOCK,), 1.0, tl.float32)
    if HAS_W:
        w = tl.load(weight_ptr + rows, mask=mask, other=0.0).to(tl.float32)
    g_l1 = tl.load(g_l1_ptr + rows * g_l1_stride, mask=mask, other=0.0).to(tl.float32)
    g_term = tl.load(g_term_ptr + rows * g_term_stride, mask=mask, other=0.0).to(tl.float32)
    out = _box(p0, p1, p2, p3, t0, t1, t2, t3, eps, FMT, CLAMP, KIND)
    zero = tl.zeros_like(g_l1)
    l1, c0, c1, c2, c3 = zero, zero, zero, zero, zero
    if L1:
        l1, c0, c1, c2, c3 = _coords(p0, p1, p2, p3, t0, t1, t2, t3, beta, SMOOTH)
    if NEED_W:
        tl.store(d_weight_ptr + rows, g_l1 * l1 + g_term * out[0], mask=mask)
    gl = g_l1 * w
    c0, c1, c2, c3 = c0 * gl, c1 * gl, c2 * gl, c3 * gl
    g_iw, g_ih, g_cw, g_ch, gwp, ghp, gwt, ght, g_dx, g_dy = _overlap_grads(out, g_term * w, KIND)
    (_, _, _, _, _, _, _, _, _, _, _, _, px1, px2, tx1, tx2, pxi, txi, _, _, _, _, _,
     py1, py2, ty1, ty2, pyi, tyi, _, _, _, _, _) = out
    dpx1, dpx2, dtx1, dtx2 = _axis_grads(px1, px2, tx1, tx2, g_iw, g_cw, gwp, gwt, g_dx)
    dpy1, dpy2, dty1, dty2 = _axis_grads(py1, py2, ty1, ty2, g_ih, g_ch, ghp, ght, g_dy)
    if NEED_P:
        dpx1, dpx2 = clamp_side_grad(dpx1, dpx2, pxi, CLAMP)
        dpy1, dpy2 = clamp_side_grad(dpy1, dpy2, pyi, CLAMP)
        a0, a2 = from_corners_grad(dpx1, dpx2, FMT)
        a1, a3 = from_corners_grad(dpy1, dpy2, FMT)
        a0, a1, a2, a3 = a0 + c0, a1 + c1, a2 + c2, a3 + c3
        a0, a1 = tl.clamp(a0, -P_MAX, P_MAX), tl.clamp(a1, -P_MAX, P_MAX)
        a2, a3 = tl.clamp(a2, -P_MAX, P_MAX), tl.clamp(a3, -P_MAX, P_MAX)
        store_boxes(d_pred_ptr, rows, mask, a0, a1, a2, a3, BLOCK)
    if NEED_T:
        dtx1, dtx2 = clamp_side_grad(dtx1, dtx2, txi, CLAMP)
        dty1, dty2 = clamp_side_grad(dty1, dty2, tyi, CLAMP)
        b0, b2 = from_corners_grad(dtx1, dtx2, FMT)
        b1, b3 = from_corners_grad(dty1, dty2, FMT)
        b0, b1, b2, b3 = b0 - c0, b1 - c1, b2 - c2, b3 - c3
        b0, b1 = tl.clamp(b0, -T_MAX, T_MAX), tl.clamp(b1, -T_MAX, T_MAX)
        b2, b3 = tl.clamp(b2, -T_MAX, T_MAX), tl.clamp(b3, -T_MAX, T_MAX)
        store_boxes(d_target_ptr, rows, mask, b0, b1, b2, b3, BLOCK)
