"""Configuration of the ``bbox`` loss: :class:`BoxLossConfig` and the DETR preset."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

import losskit
from losskit.checks import CheckInputs
from losskit.kernels import KernelField
from losskit_plugins.boxes.inputs import BoxFormat, Degenerate

__all__ = ["BoxLossConfig", "DETR_PRESET"]

#: Field values of ``preset: detr``; fields given explicitly win over the preset.
DETR_PRESET: Mapping[str, Any] = {
    "box_format": "cxcywh",
    "l1_weight": 5.0,
    "smooth_l1_beta": 0.0,
    "iou_loss": "giou",
    "iou_weight": 2.0,
}


class BoxLossConfig(losskit.LossConfig):
    """Configuration of :class:`BoxLoss` (``bbox``)."""

    preset: Literal["detr"] | None = Field(
        None,
        description="Fill unset fields from a recipe: 'detr' = cxcywh, l1_weight 5, smooth_l1_beta 0, "
        "iou_loss giou, iou_weight 2. Fields given explicitly override the preset.",
    )
    box_format: BoxFormat = Field(
        "xyxy",
        description="Layout of pred and target: 'xyxy' (corners), 'xywh' (corner + size) or 'cxcywh' "
        "(centre + size). The L1 term is taken in this format; IoU terms after conversion to xyxy.",
    )
    l1_weight: float = Field(1.0, ge=0.0, le=1e4, description="Weight of the coordinate (L1 / smooth L1) term; 0 disables it.")
    smooth_l1_beta: float = Field(
        0.0, ge=0.0, le=1e4, description="Smooth-L1 transition point (as torch.nn.functional.smooth_l1_loss); 0 = plain L1."
    )
    iou_loss: Literal["none", "iou", "giou", "diou", "ciou"] = Field(
        "giou", description="IoU-family term: 1-IoU, GIoU, DIoU or CIoU (torchvision.ops formulas), or 'none'."
    )
    iou_weight: float = Field(1.0, ge=0.0, le=1e4, description="Weight of the IoU-family term; 0 disables it.")
    eps: float = Field(
        1e-7,
        gt=0.0,
        le=1.0,
        description="Added to every IoU-family denominator, as torchvision's eps (default 1e-7; keep it far "
        "below the box areas).",
    )
    degenerate: Degenerate = Field(
        "raise",
        description="Boxes with x2 < x1 or y2 < y1 after conversion to xyxy: 'raise' a ValueError naming the "
        "first index (a value check: it runs when check_inputs does, so not on CUDA under 'auto', where such "
        "boxes are computed as given, as torchvision does), or 'clamp' each inverted side to zero length at "
        "its centre (everywhere).",
    )
    check_inputs: CheckInputs = "auto"
    kernel: KernelField = "auto"

    @model_validator(mode="before")
    @classmethod
    def _check_finite_alias(cls, data: Any) -> Any:
        """``check_finite`` (deprecated): ``true`` is ``check_inputs: always``, ``false`` is ``never``."""
        if not isinstance(data, Mapping) or "check_finite" not in data:
            return data
        data = dict(data)
        flag = data.pop("check_finite")
        if not isinstance(flag, bool):
            raise ValueError(f"check_finite: expected true or false (deprecated: use check_inputs), got {flag!r}")
        mode = "always" if flag else "never"
        if data.get("check_inputs", mode) != mode:
            raise ValueError(f"check_finite={flag} contradicts check_inputs={data['check_inputs']!r}; set only check_inputs")
        warnings.warn(
            f"bbox: check_finite is deprecated; use check_inputs={mode!r} (or 'auto': checks on CPU, none on CUDA)",
            DeprecationWarning,
            stacklevel=2,
        )
        return {**data, "check_inputs": mode}

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("preset") == "detr":
            return {**DETR_PRESET, **data}
        return data

    @model_validator(mode="after")
    def _some_term(self) -> BoxLossConfig:
        if self.l1_weight == 0 and (self.iou_loss == "none" or self.iou_weight == 0):
            raise ValueError("every term is off: set l1_weight > 0, or iou_loss with iou_weight > 0")
        return self
