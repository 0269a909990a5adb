"""The one structure every data source produces: :class:`CaptionedImages`.

A split is a list of images and a list of captions; caption ``j`` describes image
``caption_image[j]``; ``image_group[i]`` is the group id of image ``i``. Captions of
images in one group are positives of each other (five COCO captions of one image;
in the generated dataset, images with the same description).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from losskit.errors import LosskitError

__all__ = ["BadImageError", "CaptionedImages", "ImageSource", "TensorImages"]


class BadImageError(LosskitError, OSError):
    """An image file that is missing or cannot be decoded (``on_bad_image: raise``)."""


class ImageSource(Protocol):
    """Images addressable by index; ``load`` returns ``uint8 [3, H, W]``."""

    def __len__(self) -> int: ...

    def load(self, index: int, seed: int) -> Tensor:
        """Image ``index`` as ``uint8 [3, H, W]``; ``seed`` drives random augmentation.

        Raises :class:`BadImageError` naming the file when it cannot be read.
        """
        ...

    def describe(self, index: int) -> str:
        """A human name of image ``index`` (its file path) for error messages."""
        ...


@dataclass
class TensorImages:
    """Images already decoded in memory: ``uint8 [N, 3, H, W]`` (the generated dataset)."""

    pixels: Tensor

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def load(self, index: int, seed: int) -> Tensor:
        return self.pixels[index]

    def describe(self, index: int) -> str:
        return f"generated image {index}"


@dataclass
class CaptionedImages:
    """One split of an image–caption dataset.

    Attributes:
        images: the image source (``len(images)`` images).
        captions: caption strings.
        caption_image: ``[len(captions)]`` index of the image each caption describes.
        image_group: ``[len(images)]`` group id of each image (ints, any range).
        skipped: files dropped by ``on_bad_image: skip`` while building the split.
        source: where the split comes from, for messages (its annotation file).
    """

    images: ImageSource
    captions: list[str]
    caption_image: Tensor
    image_group: Tensor
    skipped: list[str]
    source: str = "the generated dataset"

    def __post_init__(self) -> None:
        if len(self.captions) != len(self.caption_image):
            raise ValueError(
                f"caption_image: expected one image index per caption ({len(self.captions)}), got {len(self.caption_image)}"
            )
        if len(self.image_group) != len(self.images):
            raise ValueError(f"image_group: expected one group per image ({len(self.images)}), got {len(self.image_group)}")
        if not self.captions:
            why = f"all {len(self.skipped)} images were skipped as missing" if self.skipped else "it lists no captions"
            raise LosskitError(f"no readable images with captions in {self.source}: {why}")

    @property
    def caption_group(self) -> Tensor:
        """``[len(captions)]`` group id of each caption."""
        return self.image_group[self.caption_image]

    def num_groups(self) -> int:
        return int(torch.unique(self.image_group).numel())


def resolve_path(root: Path, name: str) -> Path:
    """``root / name``, for a relative ``name`` that stays inside ``root``.

    Raises:
        ValueError: ``name`` is absolute or leaves ``root`` (``../..``); the lexical
            path counts, so a symbolic link inside ``root`` may still point elsewhere.
    """
    path = Path(name)
    if path.is_absolute() or path.drive:
        raise ValueError(f"image path {name!r} is absolute; image paths are relative to image_root {root}")
    if os.path.normpath(path).split(os.sep)[0] == os.pardir:
        raise ValueError(f"image path {name!r} leaves image_root {root}; image paths must stay inside it")
    return root / path
