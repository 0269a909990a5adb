"""``bbox``: weighted L1 / smooth-L1 plus an IoU-family box loss (torchvision.ops formulas; DETR's normalisation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import losskit
from losskit.checks import compute_dtype
from losskit.loss import reduce
from losskit_plugins.boxes.config import BoxLossConfig
from losskit_plugins.boxes.inputs import (
    BoxFormat,
    check_boxes,
    check_num_boxes,
    cast_saturating,
    check_weights,
    clamp_degenerate,
    to_rows,
    validate_values,
)
from losskit_plugins.boxes.iou import box_iou_loss

__all__ = ["BoxLoss"]


class BoxLoss(losskit.Loss[BoxLossConfig]):
    """Box regression loss: weighted L1 / smooth-L1 plus an IoU-family term (IoU, GIoU, DIoU, CIoU).

    Call: ``loss(pred [N, 4], target [N, 4], *, weights=None, num_boxes=None)``.

    - ``pred``, ``target``: boxes in ``config.box_format``; any float dtype (fp16/bf16
      are computed in fp32; the result is fp32). Gradients reach both if they require them.
    - ``weights``: optional per-box weights ``[N]`` multiplying each box's loss.
    - ``num_boxes``: optional normaliser for ``reduction="mean"`` (e.g. DETR's number of
      target boxes, all-reduced and divided by the world size), a number or a
      one-element tensor (no host sync), clamped to >= 1.
      Without it, ``"mean"`` divides by N.

    Per box: ``l1_weight * sum_coords(|pred - target|) + iou_weight * iou_term``
    (smooth L1 with ``smooth_l1_beta > 0``), times ``weights``. ``"mean"`` is the sum
    over boxes divided by ``num_boxes`` (or N), as DETR's ``SetCriterion``; ``"sum"``
    the sum; ``"none"`` the ``[N]`` per-box values.

    ``compute(...)`` also returns ``parts``: ``"l1"`` and the IoU term under its name
    (``"giou"``, ...), each unweighted by its term weight but reduced like the loss, so
    ``loss == l1_weight * parts["l1"] + iou_weight * parts["giou"]``; a term whose
    weight is 0 is not computed. ``metrics["mean_iou"]``: mean plain IoU over boxes.

    Identical boxes give 0 for every IoU variant, zero-area boxes included; on valid
    boxes the IoU-family values and gradients match ``torchvision.ops``.
    """

    config_class = BoxLossConfig

    def compute(
        self,
        pred: Tensor,
        target: Tensor,
        *,
        weights: Tensor | None = None,
        num_boxes: Tensor | float | None = None,
    ) -> losskit.LossOutput:
        """Loss, parts and metrics of ``pred [N, 4]`` against ``target [N, 4]``; see the class docstring."""
        cfg = self.config
        pred, target = check_boxes(pred, target)
        n = pred.shape[0]
        if weights is not None:
            weights = check_weights(weights, n, pred.device)
        normalizer = None
        if num_boxes is not None:
            if cfg.reduction != "mean":
                raise ValueError(f"num_boxes: only used by reduction='mean', got reduction={cfg.reduction!r}")
            normalizer = check_num_boxes(num_boxes, pred.device)

        use_l1 = cfg.l1_weight > 0
        use_iou = cfg.iou_loss != "none" and cfg.iou_weight > 0
        out_dtype = compute_dtype(pred, target)
        pred, target, pred_rows, target_rows, weights = self._prepare(pred, target, weights, normalizer, out_dtype)

        def finish(values: Tensor) -> Tensor:
            if weights is not None:
                values = values * weights
            return reduce(values, cfg.reduction, normalizer=normalizer)

        parts: dict[str, Tensor] = {}  # each term reduced like the loss, before its weight
        if use_l1:
            if cfg.smooth_l1_beta > 0:
                l1 = F.smooth_l1_loss(pred, target, beta=cfg.smooth_l1_beta, reduction="none").sum(1)
            else:
                l1 = (pred - target).abs().sum(1)
            parts["l1"] = finish(l1)
        if use_iou:
            term, iou = box_iou_loss(pred_rows, target_rows, cfg.iou_loss, cfg.eps)  # type: ignore[arg-type]
            parts[cfg.iou_loss] = finish(term)
        else:
            with torch.no_grad():
                _, iou = box_iou_loss(pred_rows.detach(), target_rows.detach(), "iou", cfg.eps)
        # the reductions are linear: weighting the reduced parts is weighting every box
        term_weights = {"l1": cfg.l1_weight, cfg.iou_loss: cfg.iou_weight}
        weighted = [term_weights[name] * value for name, value in parts.items()]
        total = weighted[0] if len(weighted) == 1 else weighted[0] + weighted[1]  # the config allows 1 or 2
        mean_iou = iou.sum() / max(n, 1)
        return losskit.LossOutput(
            loss=cast_saturating(total, out_dtype),
            parts={name: cast_saturating(value, out_dtype) for name, value in parts.items()},
            metrics={"mean_iou": mean_iou.to(out_dtype)},
        )

    def _prepare(
        self,
        pred: Tensor,
        target: Tensor,
        weights: Tensor | None,
        normalizer: Tensor | float | None,
        dtype: torch.dtype,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """Cast, convert, check and (under ``clamp``) repair the boxes; check weights and a tensor ``num_boxes``.

        Returns ``(pred, target, pred_rows, target_rows, weights)``: the boxes ``[N, 4]``
        in ``box_format`` and as xyxy coordinate rows ``[4, N]``, in the compute dtype
        (float32, or float64 for float64 inputs and for fp32 coordinates beyond
        :data:`WIDE_ABOVE`, whose areas would overflow float32).
        """
        cfg = self.config
        raw = {"pred": pred, "target": target} | ({"weights": weights} if weights is not None else {})
        if isinstance(normalizer, Tensor):
            raw["num_boxes"] = normalizer

        def convert(dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
            p, t = cast_saturating(pred, dtype), cast_saturating(target, dtype)
            return p, t, to_rows(p, cfg.box_format), to_rows(t, cfg.box_format)  # [4, N] xyxy rows

        p, t, p_rows, t_rows = convert(dtype)
        raising = cfg.degenerate == "raise"

        def order() -> dict[str, tuple[Tensor, BoxFormat]] | None:
            return {"pred": (p_rows, cfg.box_format), "target": (t_rows, cfg.box_format)} if raising else None

        wide = validate_values(raw, finite=cfg.check_finite, ordered=order(), wide=("pred", "target"))
        if wide and dtype == torch.float32:
            p, t, p_rows, t_rows = convert(torch.float64)
            dtype = torch.float64
            if raising:  # float64 conversion can resolve an inversion that float32 rounded away
                validate_values(raw, finite=False, ordered=order())
        if not raising:
            p_rows, t_rows = clamp_degenerate(p_rows), clamp_degenerate(t_rows)
        return p, t, p_rows, t_rows, cast_saturating(weights, dtype) if weights is not None else None
