"""Image–caption datasets on disk: COCO captions and JSONL/CSV manifests (Flickr30k-style).

- COCO: ``captions_*.json`` with ``images: [{id, file_name}]`` and
  ``annotations: [{image_id, caption}]``; image paths relative to ``image_root``.
- Manifest: ``.jsonl`` (one ``{"image": ..., "caption": ...}`` per line) or ``.csv``
  (header ``image,caption``); rows naming the same image form one group.

Image paths are relative to ``image_root`` and may not leave it (``../``, absolute
paths: a ``ConfigError`` naming the entry). Missing files are found when the split is
built (a ``stat`` per image); files that exist but do not decode are found when loaded.
``on_bad_image="raise"`` raises :class:`~losskit.train.data.base.BadImageError` naming
the file; ``"skip"`` drops the image with its captions and records it in ``skipped``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from losskit.errors import ConfigError
from losskit.train.data.annotations import Row, coco_rows, manifest_rows
from losskit.train.data.base import BadImageError, CaptionedImages, resolve_path

__all__ = ["FileImages", "load_coco", "load_manifest"]


@dataclass
class FileImages:
    """Images decoded from files with PIL and resized with torchvision transforms.

    Args:
        paths: one file per image.
        image_size: output side ``S``: resize the short side to ``S`` then centre-crop
            (or, with ``augment``, a random resized crop of 80-100% and light colour jitter).
        augment: random augmentation, seeded per sample by ``load(..., seed)``.
    """

    paths: list[Path]
    image_size: int
    augment: bool = False

    def __post_init__(self) -> None:
        from torchvision.transforms import v2

        size = self.image_size
        if self.augment:
            steps = [v2.RandomResizedCrop(size, scale=(0.8, 1.0), antialias=True), v2.ColorJitter(0.2, 0.2, 0.2)]
        else:
            steps = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
        self.transform = v2.Compose([v2.PILToTensor(), *steps])

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self, index: int) -> str:
        return str(self.paths[index])

    def load(self, index: int, seed: int) -> Tensor:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise BadImageError(f"cannot read image {path}: {exc}") from None
        if not self.augment:
            return self.transform(rgb)  # uint8 [3, S, S]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(rgb)


def _paths(names: list[str], where: dict[str, str], root: Path) -> list[Path]:
    paths = []
    for name in names:
        try:
            paths.append(resolve_path(root, name))
        except ValueError as exc:
            raise ConfigError([(where[name], str(exc))]) from None
    return paths


def _build(
    rows: list[Row], root: Path, source: Path, image_size: int, augment: bool, on_bad_image: str
) -> CaptionedImages:
    """Group ``(image_name, caption, where)`` rows by image; check that every file exists and stays in ``root``."""
    index: dict[str, int] = {}
    first_seen: dict[str, str] = {}
    captions: list[str] = []
    caption_image: list[int] = []
    for name, caption, where in rows:
        if name not in index:
            index[name] = len(index)
            first_seen[name] = where
        captions.append(caption)
        caption_image.append(index[name])
    paths = _paths(list(index), first_seen, root)
    missing = {i for i, p in enumerate(paths) if not p.is_file()}
    if missing and on_bad_image == "raise":
        first = paths[min(missing)]
        raise BadImageError(
            f"image file not found: {first} (listed in {source}; {len(missing)} missing in all; "
            "set data.on_bad_image=skip to drop them)"
        )
    kept = [i for i in range(len(paths)) if i not in missing]
    new_index = {old: new for new, old in enumerate(kept)}
    pairs = [(c, new_index[i]) for c, i in zip(captions, caption_image) if i not in missing]
    return CaptionedImages(
        images=FileImages([paths[i] for i in kept], image_size, augment),
        captions=[c for c, _ in pairs],
        caption_image=torch.tensor([i for _, i in pairs], dtype=torch.long),
        image_group=torch.arange(len(kept)),
        skipped=[str(paths[i]) for i in sorted(missing)],
        source=str(source),
    )


def load_coco(
    path: str | Path, *, image_root: str | Path | None, image_size: int, augment: bool, on_bad_image: str
) -> CaptionedImages:
    """A COCO captions file (``captions_train2017.json`` layout) as a split; group = image id."""
    path = Path(path)
    rows = coco_rows(path)
    root = Path(image_root) if image_root is not None else path.parent
    return _build(rows, root, path, image_size, augment, on_bad_image)


def load_manifest(
    path: str | Path, *, image_root: str | Path | None, image_size: int, augment: bool, on_bad_image: str
) -> CaptionedImages:
    """A JSONL or CSV manifest of ``image,caption`` rows as a split; group = image file."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    return _build(manifest_rows(path), root, path, image_size, augment, on_bad_image)
