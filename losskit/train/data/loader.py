"""From a :class:`DataConfig` to batches: splits, tokenised captions, sampler, collate.

Training iterates over caption indices (each caption with its image). The sampler is
a :class:`torch.utils.data.DistributedSampler` (one replica without DDP) that can
start mid-epoch, and yields ``(caption_index, sample_seed)`` so augmentation is a
function of (seed, epoch, index) only: a resumed run sees exactly the same batches.
Images arrive as ``uint8`` and are normalised on the device (:func:`normalize_images`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from losskit.errors import ConfigError
from losskit.train.config import DataConfig
from losskit.train.data.base import BadImageError, CaptionedImages
from losskit.train.data.files import load_coco, load_manifest
from losskit.train.data.synthetic import generate_split
from losskit.train.tokenizer import ByteTokenizer

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Splits",
    "build_splits",
    "collate",
    "normalize_images",
    "ResumableSampler",
    "train_loader",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_images(images: Tensor) -> Tensor:
    """``uint8 [B, 3, H, W]`` -> float ``[B, 3, H, W]`` normalised with ImageNet statistics."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1) * 255
    return (images.float() - mean) / std


@dataclass
class Splits:
    """Train and validation splits with their captions tokenised (``[T, L]`` int64)."""

    train: CaptionedImages
    val: CaptionedImages
    train_tokens: Tensor
    val_tokens: Tensor


def _load(config: DataConfig, annotations: str, augment: bool) -> CaptionedImages:
    load = load_coco if config.source == "coco" else load_manifest
    return load(
        annotations,
        image_root=config.image_root,
        image_size=config.image_size,
        augment=augment,
        on_bad_image=config.on_bad_image,
    )


def build_splits(config: DataConfig, *, seed: int) -> Splits:
    """Build both splits; ``shuffle_pairs`` re-pairs training captions with random images (control)."""
    if config.source == "generated":
        common = dict(
            image_size=config.image_size,
            captions_per_image=config.captions_per_image,
            two_object_prob=config.two_object_prob,
        )
        train = generate_split(config.train_images, seed=config.dataset_seed, split=0, **common)
        val = generate_split(config.val_images, seed=config.dataset_seed, split=1, **common)
    else:
        assert config.train_annotations is not None and config.val_annotations is not None  # validated by DataConfig
        train = _load(config, config.train_annotations, config.augment)
        val = _load(config, config.val_annotations, False)
    if config.shuffle_pairs:
        g = torch.Generator().manual_seed(seed)
        train.caption_image = torch.randint(len(train.images), (len(train.captions),), generator=g)
    tokenizer = ByteTokenizer(config.max_text_length)
    return Splits(train, val, tokenizer(train.captions), tokenizer(val.captions))


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that yields ``(index, sample_seed)`` and can skip the first samples of an epoch.

    Call :meth:`set_epoch` (and :meth:`set_start` after a resume) before iterating.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this rank in the current epoch."""
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = list(super().__iter__())[self.start :]
        base = (self.seed * 1_000_003 + self.epoch) * 2_147_483_647
        return iter([(i, (base + i) % (2**63)) for i in indices])

    def __len__(self) -> int:
        return super().__len__() - self.start


class PairDataset(Dataset):
    """Caption ``j`` with its image: ``{"image": uint8 [3,S,S], "tokens": [L], "group": int}``.

    A bad image gives ``{"bad": message}`` instead of raising inside a worker; the
    training loop applies ``on_bad_image`` in the main process.
    """

    def __init__(self, split: CaptionedImages, tokens: Tensor) -> None:
        self.split = split
        self.tokens = tokens
        self.groups = split.caption_group

    def __len__(self) -> int:
        return len(self.split.captions)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        j, seed = key
        try:
            image = self.split.images.load(int(self.split.caption_image[j]), seed)
        except BadImageError as exc:
            return {"bad": str(exc), "file": self.split.images.describe(int(self.split.caption_image[j]))}
        return {"image": image, "tokens": self.tokens[j], "group": self.groups[j]}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack good items; list the bad ones (``bad``: messages, ``bad_files``); trim token padding."""
    good = [it for it in items if "bad" not in it]
    bad = [it["bad"] for it in items if "bad" in it]
    bad_files = [it["file"] for it in items if "bad" in it]
    if not good:
        return {"images": None, "tokens": None, "groups": None, "bad": bad, "bad_files": bad_files}
    tokens = torch.stack([it["tokens"] for it in good])  # [B, L]
    length = int((tokens != ByteTokenizer.PAD).sum(1).max())
    return {
        "images": torch.stack([it["image"] for it in good]),  # uint8 [B, 3, S, S]
        "tokens": tokens[:, :length].contiguous(),
        "groups": torch.stack([it["group"] for it in good]),
        "bad": bad,
        "bad_files": bad_files,
    }


def train_loader(
    splits: Splits, config: DataConfig, *, seed: int, num_replicas: int, rank: int, pin_memory: bool
) -> tuple[DataLoader, ResumableSampler]:
    """The training DataLoader (per-process ``batch_size``, full batches only) and its sampler."""
    dataset = PairDataset(splits.train, splits.train_tokens)
    sampler = ResumableSampler(dataset, num_replicas=num_replicas, rank=rank, seed=seed)
    if len(sampler) < config.batch_size:
        raise ConfigError(
            [("data.batch_size", f"{config.batch_size} per process is more than the {len(sampler)} training captions per process")]
        )
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.num_workers,
        collate_fn=collate,
        drop_last=True,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
    return loader, sampler


def image_batches(split: CaptionedImages, batch_size: int) -> Iterator[tuple[Tensor, list[int]]]:
    """Validation images in order: ``(uint8 [b, 3, S, S], indices of images that failed to load)``."""
    for start in range(0, len(split.images), batch_size):
        images, bad = [], []
        for i in range(start, min(start + batch_size, len(split.images))):
            try:
                images.append(split.images.load(i, 0))
            except BadImageError:
                bad.append(i)
        yield (torch.stack(images) if images else torch.empty(0, dtype=torch.uint8)), bad
