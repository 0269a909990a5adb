"""torchvision baselines ``losskit bench`` times ``bbox`` against (torchvision imported on first call)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["torchvision_giou", "torchvision_giou_l1"]


def torchvision_giou(pred: Tensor, target: Tensor) -> Tensor:
    """torchvision's GIoU loss, mean over boxes: matches ``bbox`` with ``l1_weight: 0`` (xyxy)."""
    from torchvision.ops import generalized_box_iou_loss

    return generalized_box_iou_loss(pred, target, reduction="mean")


def torchvision_giou_l1(pred: Tensor, target: Tensor) -> Tensor:
    """torchvision's GIoU loss + L1 summed over coordinates, mean over boxes: matches the default config."""
    from torchvision.ops import generalized_box_iou_loss

    n = max(pred.shape[0], 1)
    return (generalized_box_iou_loss(pred, target, reduction="sum") + F.l1_loss(pred, target, reduction="sum")) / n
