"""Evaluation during training: recall@K of the model on the validation split."""

from __future__ import annotations

import torch

from losskit.errors import LosskitError
from losskit.train.config import TrainConfig
from losskit.train.data.base import BadImageError
from losskit.train.data.loader import Splits, image_batches, normalize_images
from losskit.train.evaluation import recall_at_k
from losskit.train.models import DualEncoder

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    model: DualEncoder, splits: Splits, config: TrainConfig, device: torch.device, skipped: list[str]
) -> dict[str, float]:
    """Group-aware recall@K on the validation split (images that fail to load follow ``on_bad_image``).

    Files that fail are added to ``skipped`` (each once).

    Raises:
        BadImageError: an unreadable image with ``on_bad_image: raise``.
        LosskitError: no validation image could be read (``on_bad_image: skip``).
    """
    was_training = model.training
    model.eval()
    val = splits.val
    bs = config.eval.batch_size
    image_feats, bad_images = [], []
    for images, bad in image_batches(val, bs):
        if bad and config.data.on_bad_image == "raise":
            raise BadImageError(f"cannot read validation image {val.images.describe(bad[0])}")
        bad_images += bad
        skipped += [f for f in (val.images.describe(i) for i in bad) if f not in skipped]
        if len(images):
            image_feats.append(model.encode_image(normalize_images(images.to(device))).float().cpu())
    if not image_feats:
        raise LosskitError(
            f"no readable validation images in {val.source}: all {len(val.images)} failed to load "
            f"(e.g. {val.images.describe(0)}); there is nothing to evaluate on"
        )
    tokens = splits.val_tokens
    text_feats = [model.encode_text(tokens[s : s + bs].to(device)).float().cpu() for s in range(0, len(tokens), bs)]
    keep_images = torch.ones(len(val.images), dtype=torch.bool)
    keep_images[bad_images] = False
    keep_texts = keep_images[val.caption_image]
    model.train(was_training)
    return recall_at_k(
        torch.cat(image_feats),
        torch.cat(text_feats)[keep_texts],
        val.image_group[keep_images],
        val.caption_group[keep_texts],
        ks=config.eval.ks,
    )
