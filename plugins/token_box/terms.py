"""The terms of ``token_box`` on the coordinate logits: expected boxes, box terms (``bbox`` maths), NTL.

Formulas:

- the softmax is restricted to the K coordinate tokens: ``p = softmax(z[coordinate ids])``;
- a token's expected value is ``E = sum_k p_k v_k`` with ``v_k`` the digit ``k`` or the
  bin's position; a coordinate is ``sum over its tokens of place * E`` (place values
  ``10^e`` for digits, as the Number Token Loss weighs digits; 1 for a location token),
  then mapped to ``(value - low) / (high - low)``;
- box terms: L1 / smooth-L1 over the 4 coordinates in ``box_format`` and the IoU family
  after conversion to xyxy, by ``losskit_plugins.boxes`` (an inverted predicted side is
  collapsed to its centre, as ``bbox``'s ``degenerate="clamp"``);
- NTL-MSE ``(E - v_label)^2`` and NTL-Wasserstein ``sum_k p_k |v_k - v_label|`` per
  coordinate token (Zausinger et al., ICML 2025, with digit values 0-9; bins in [0, 1]).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from losskit_plugins.boxes.inputs import clamp_degenerate, to_rows
from losskit_plugins.boxes.iou import box_iou_loss
from losskit_plugins.token_box.config import TokenBoxConfig
from losskit_plugins.token_box.parse import BoxLayout

__all__ = ["BoxTerms", "box_terms", "token_values"]


class BoxTerms(NamedTuple):
    """Per-position ``[N]`` terms (zero away from their anchors / coordinate tokens) and IoUs per anchor."""

    l1: Tensor | None
    iou_term: Tensor | None
    ntl_mse: Tensor | None
    ntl_wasserstein: Tensor | None
    iou_expected: Tensor  # [N] plain IoU of the expected boxes (0 off the anchors; detached)
    iou_argmax: Tensor  # [N] plain IoU of the argmax-decoded boxes (0 off the anchors)
    zero: Tensor  # 0-d zero attached to the logits' graph


def token_values(cfg: TokenBoxConfig, k: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[K]`` value of each coordinate token, in the units the box terms use after :func:`_normalise`.

    Digits: 0..9 (combined by place value, normalised per coordinate). Loc tokens: the
    bin's position in ``[0, 1]`` of the coordinate range (``center`` or ``edge``).
    """
    idx = torch.arange(k, dtype=dtype, device=device)
    if cfg.style == "digits":
        return idx
    return (idx + 0.5) / k if cfg.bin_position == "center" else idx / (k - 1)


def _normalise(cfg: TokenBoxConfig, coords: Tensor) -> Tensor:
    """Digits: written numbers to fractions of the coordinate range; loc values already are."""
    if cfg.style != "digits":
        return coords
    lo, hi = cfg.coord_range
    return (coords - lo) / (hi - lo)


def _boxes(cfg: TokenBoxConfig, token_value: Tensor, layout: BoxLayout) -> Tensor:
    """``[N, 4]`` boxes at their anchors: each coordinate token's ``place * value`` summed into its slot."""
    n = token_value.shape[0]
    contrib = torch.where(layout.is_coord, token_value * layout.place.to(token_value.dtype), 0.0)
    coords = token_value.new_zeros(n * 4).index_add(0, layout.slot, contrib)
    return _normalise(cfg, coords.view(n, 4))


def _in_slots(boxes: Tensor, ok: Tensor) -> Tensor:
    """Boxes at well-formed anchors, the unit box (0, 0, 1, 1: valid in every format) elsewhere.

    No gradient reaches those slots; the unit box is built on the device (no host copy).
    """
    unit = torch.cat((boxes.new_zeros(2), boxes.new_ones(2)))
    return torch.where(ok[:, None], boxes, unit)


def _iou(cfg: TokenBoxConfig, pred: Tensor, target: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    rows_p = clamp_degenerate(to_rows(pred, cfg.box_format))  # [4, N] xyxy
    rows_t = clamp_degenerate(to_rows(target, cfg.box_format))
    return box_iou_loss(rows_p, rows_t, kind, cfg.eps)  # type: ignore[arg-type]


def box_terms(cfg: TokenBoxConfig, z: Tensor, layout: BoxLayout, values: Tensor) -> BoxTerms:
    """All terms from the coordinate logits ``z [N, K]`` (compute dtype) and the parsed labels."""
    ok = layout.box_ok
    p = torch.softmax(z, dim=-1)  # [N, K] restricted to the coordinate tokens
    expected = p @ values  # [N]
    label_value = values[layout.value]  # [N]
    pred = _in_slots(_boxes(cfg, expected, layout), ok)  # [N, 4]
    target = _in_slots(_boxes(cfg, label_value, layout), ok)
    l1 = iou_term = None
    if cfg.l1_weight > 0:
        if cfg.smooth_l1_beta > 0:
            l1 = F.smooth_l1_loss(pred, target, beta=cfg.smooth_l1_beta, reduction="none").sum(1)
        else:
            l1 = (pred - target).abs().sum(1)
        l1 = torch.where(ok, l1, 0.0)
    if cfg.iou_loss != "none" and cfg.iou_weight > 0:
        term, iou = _iou(cfg, pred, target, cfg.iou_loss)
        iou_term = torch.where(ok, term, 0.0)
    else:
        iou = _iou(cfg, pred.detach(), target, "iou")[1]
    with torch.no_grad():
        argmax = _in_slots(_boxes(cfg, values[z.argmax(-1)], layout), ok)
        iou_argmax = _iou(cfg, argmax, target, "iou")[1]
    mse = wasserstein = None
    if cfg.ntl_mse_weight > 0:
        mse = torch.where(layout.is_coord, (expected - label_value).square(), 0.0)
    if cfg.ntl_wasserstein_weight > 0:
        dist = (values[None, :] - label_value[:, None]).abs()  # [N, K]
        wasserstein = torch.where(layout.is_coord, (p * dist).sum(-1), 0.0)
    zero = torch.zeros((), dtype=z.dtype, device=z.device)
    return BoxTerms(
        l1, iou_term, mse, wasserstein, torch.where(ok, iou.detach(), zero), torch.where(ok, iou_argmax, zero),
        z.sum() * 0.0,
    )
