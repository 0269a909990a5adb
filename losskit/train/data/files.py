"""Image–caption datasets on disk: COCO captions and JSONL/CSV manifests (Flickr30k-style).

- COCO: ``captions_*.json`` with ``images: [{id, file_name}]`` and
  ``annotations: [{image_id, caption}]``; image paths relative to ``image_root``.
- Manifest: ``.jsonl`` (one ``{"image": ..., "caption": ...}`` per line) or ``.csv``
  (header ``image,caption``); rows naming the same image form one group.

Missing files are found when the split is built (a ``stat`` per image); files that
exist but do not decode are found when loaded. ``on_bad_image="raise"`` raises
:class:`~losskit.train.data.base.BadImageError` naming the file; ``"skip"`` drops the
image with its captions and records it in ``skipped``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from losskit.errors import ConfigError
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


def _build(
    rows: Iterable[tuple[str, str]], root: Path, source: Path, image_size: int, augment: bool, on_bad_image: str
) -> CaptionedImages:
    """Group ``(image_name, caption)`` rows by image; check that every file exists."""
    index: dict[str, int] = {}
    names: list[str] = []
    captions: list[str] = []
    caption_image: list[int] = []
    for name, caption in rows:
        if name not in index:
            index[name] = len(names)
            names.append(name)
        captions.append(caption)
        caption_image.append(index[name])
    paths = [resolve_path(root, n) for n in names]
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
    )


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read: {exc.strerror or exc}")]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError([(f"{path}:{exc.lineno}:{exc.colno}", f"invalid JSON: {exc.msg}")]) from None


def load_coco(
    path: str | Path, *, image_root: str | Path | None, image_size: int, augment: bool, on_bad_image: str
) -> CaptionedImages:
    """A COCO captions file (``captions_train2017.json`` layout) as a split; group = image id."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ConfigError([(str(path), "expected a COCO captions file with 'images' and 'annotations'")])
    try:
        files = {img["id"]: img["file_name"] for img in data["images"]}
        rows = [(files[a["image_id"]], str(a["caption"]).strip()) for a in data["annotations"]]
    except (KeyError, TypeError) as exc:
        raise ConfigError([(str(path), f"malformed COCO entry: missing or unknown {exc}")]) from None
    root = Path(image_root) if image_root is not None else path.parent
    return _build(rows, root, path, image_size, augment, on_bad_image)


def _manifest_rows(path: Path) -> list[tuple[str, str]]:
    if path.suffix.lower() == ".csv":
        try:
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames is None or not {"image", "caption"} <= set(reader.fieldnames):
                    raise ConfigError([(str(path), f"expected a CSV header with image,caption, got {reader.fieldnames}")])
                return [(row["image"], row["caption"]) for row in reader]
        except OSError as exc:
            raise ConfigError([(str(path), f"cannot read: {exc.strerror or exc}")]) from None
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read: {exc.strerror or exc}")]) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append((str(row["image"]), str(row["caption"])))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError([(f"{path}:{number}", 'expected a JSON object {"image": ..., "caption": ...}')]) from None
    return rows


def load_manifest(
    path: str | Path, *, image_root: str | Path | None, image_size: int, augment: bool, on_bad_image: str
) -> CaptionedImages:
    """A JSONL or CSV manifest of ``image,caption`` rows as a split; group = image file."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    return _build(_manifest_rows(path), root, path, image_size, augment, on_bad_image)
