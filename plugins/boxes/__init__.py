"""Bundled losskit plugin ``boxes``: the box regression loss ``bbox``.

``bbox`` is the usual detection / visual-grounding box loss: a coordinate term (L1 or
smooth L1) plus an IoU-family term (IoU, GIoU, DIoU or CIoU), each weighted, with
DETR's normalisation by the number of boxes. ``preset: detr`` gives DETR's recipe
(Carion et al. 2020, "End-to-End Object Detection with Transformers"): L1 weight 5 on
normalised cxcywh boxes plus GIoU weight 2, summed over boxes and divided by
``num_boxes``.
"""

from __future__ import annotations

from typing import Any

import losskit
from losskit.bench import BenchSpec
from losskit_plugins.boxes.baselines import torchvision_giou, torchvision_giou_l1
from losskit_plugins.boxes.cases import SIZES, example_inputs
from losskit_plugins.boxes.config import DETR_PRESET, BoxLossConfig
from losskit_plugins.boxes.loss import BoxLoss

__all__ = ["BoxLoss", "BoxLossConfig", "DETR_PRESET", "register_losses"]


@losskit.hookimpl
def register_losses(register: Any) -> None:
    """Register ``bbox``."""
    register(
        "bbox",
        BoxLoss,
        config=BoxLossConfig,
        bench=BenchSpec(
            example_inputs=example_inputs,
            sizes=SIZES,
            baselines={"torchvision_giou_l1": torchvision_giou_l1, "torchvision_giou": torchvision_giou},
        ),
    )

