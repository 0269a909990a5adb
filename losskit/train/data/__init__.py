"""Data of the reference trainer: the generated dataset, COCO and manifest files, loaders."""

from losskit.train.data.base import BadImageError, CaptionedImages
from losskit.train.data.loader import Splits, build_splits

__all__ = ["BadImageError", "CaptionedImages", "Splits", "build_splits"]
