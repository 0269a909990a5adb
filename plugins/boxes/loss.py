"""``bbox``: weighted L1 / smooth-L1 plus an IoU-family box loss (torchvision.ops formulas; DETR's normalisation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import losskit
from losskit.checks import compute_dtype, value_checks_enabled
from losskit.kernels import use_triton
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

    Value checks (NaN/inf, and inverted boxes under ``degenerate="raise"``) follow
    ``config.check_inputs``: on CPU tensors under ``"auto"``, never on CUDA unless
    ``"always"`` (the input policy, docs/troubleshooting.md).

    Paths (``config.kernel``): on CUDA a fused Triton kernel (one pass forward saving
    only the inputs, one backward recomputing; no host synchronisation under
    ``check_inputs="auto"``); elsewhere, and for float64, the PyTorch path. Both agree
    to float32 rounding, values and gradients.
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

        out_dtype = compute_dtype(pred, target)
        checks = value_checks_enabled(cfg.check_inputs, pred.device)
        fused = out_dtype == torch.float32 and use_triton(cfg.kernel, pred.device)
        if fused and not (checks or pred.device.type == "cpu"):  # no value is read: no host sync
            return self._fused(pred, target, weights, normalizer)
        prepared = self._prepare(pred, target, weights, normalizer, out_dtype, checks)
        if fused and prepared[0].dtype == torch.float32:  # checked, and not wide enough for float64
            return self._fused(pred, target, weights, normalizer)
        return self._torch(*prepared, normalizer=normalizer, out_dtype=out_dtype)

    def _torch(
        self,
        pred: Tensor,
        target: Tensor,
        pred_rows: Tensor,
        target_rows: Tensor,
        weights: Tensor | None,
        *,
        normalizer: Tensor | float | None,
        out_dtype: torch.dtype,
    ) -> losskit.LossOutput:
        """The PyTorch path on prepared inputs (see :meth:`_prepare`)."""
        cfg = self.config

        def finish(values: Tensor) -> Tensor:
            if weights is not None:
                values = values * weights
            return reduce(values, cfg.reduction, normalizer=normalizer)

        parts: dict[str, Tensor] = {}  # each term reduced like the loss, before its weight
        if cfg.l1_weight > 0:
            if cfg.smooth_l1_beta > 0:
                l1 = F.smooth_l1_loss(pred, target, beta=cfg.smooth_l1_beta, reduction="none").sum(1)
            else:
                l1 = (pred - target).abs().sum(1)
            parts["l1"] = finish(l1)
        if self._use_iou():
            term, iou = box_iou_loss(pred_rows, target_rows, cfg.iou_loss, cfg.eps)  # type: ignore[arg-type]
            parts[cfg.iou_loss] = finish(term)
        else:
            with torch.no_grad():
                _, iou = box_iou_loss(pred_rows.detach(), target_rows.detach(), "iou", cfg.eps)
        return self._output(parts, iou.sum() / max(pred.shape[0], 1), out_dtype)

    def _fused(
        self, pred: Tensor, target: Tensor, weights: Tensor | None, normalizer: Tensor | float | None
    ) -> losskit.LossOutput:
        """The Triton path (:mod:`losskit_plugins.boxes.fused`; imported here, on first use)."""
        from losskit_plugins.boxes.fused import FusedBoxSpec, fused_box_terms

        cfg = self.config
        n = pred.shape[0]
        spec = FusedBoxSpec(
            box_format=cfg.box_format,
            clamp=cfg.degenerate == "clamp",
            kind=cfg.iou_loss if self._use_iou() else "none",
            l1=cfg.l1_weight > 0,
            beta=cfg.smooth_l1_beta,
            eps=cfg.eps,
            per_box=cfg.reduction == "none",
        )
        l1, term, iou_sum = fused_box_terms(pred, target, None if weights is None else weights.contiguous(), spec)
        divisor = (normalizer if normalizer is not None else max(n, 1)) if cfg.reduction == "mean" else 1.0
        parts = {"l1": l1 / divisor} if spec.l1 else {}
        if spec.kind != "none":
            parts[cfg.iou_loss] = term / divisor
        return self._output(parts, iou_sum / max(n, 1), torch.float32)

    def _use_iou(self) -> bool:
        return self.config.iou_loss != "none" and self.config.iou_weight > 0

    def _output(self, parts: dict[str, Tensor], mean_iou: Tensor, out_dtype: torch.dtype) -> losskit.LossOutput:
        """``loss = sum of term weight * part`` (the reductions are linear: weighting the reduced
        parts is weighting every box), parts and the ``mean_iou`` metric, in ``out_dtype``."""
        term_weights = {"l1": self.config.l1_weight, self.config.iou_loss: self.config.iou_weight}
        weighted = [term_weights[name] * value for name, value in parts.items()]
        total = weighted[0] if len(weighted) == 1 else weighted[0] + weighted[1]  # the config allows 1 or 2
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
        checks: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """Cast, convert, check and (under ``clamp``) repair the boxes; check weights and a tensor ``num_boxes``.

        ``checks``: run the value checks (``check_inputs``: finite values, and box order
        under ``degenerate="raise"``). On the CPU the coordinates' magnitude is read
        unless ``check_inputs="never"`` (free there); elsewhere only with the checks.

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
            return {"pred": (p_rows, cfg.box_format), "target": (t_rows, cfg.box_format)} if raising and checks else None

        scan = checks or (pred.device.type == "cpu" and cfg.check_inputs != "never")
        wide = validate_values(raw, finite=checks, ordered=order(), wide=("pred", "target") if scan else ())
        if wide and dtype == torch.float32:
            p, t, p_rows, t_rows = convert(torch.float64)
            dtype = torch.float64
            if raising and checks:  # float64 conversion can resolve an inversion that float32 rounded away
                validate_values(raw, finite=False, ordered=order())
        if not raising:
            p_rows, t_rows = clamp_degenerate(p_rows), clamp_degenerate(t_rows)
        return p, t, p_rows, t_rows, cast_saturating(weights, dtype) if weights is not None else None
