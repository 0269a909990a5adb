"""Model + loss as one module (what DDP wraps), and who gathers features across ranks.

The trainer asks the loss what it is through its declared interface, never by
inspecting its config: :meth:`losskit.Loss.term_losses` says whether it combines named
terms (then each term gets the contrastive inputs), :attr:`losskit.Loss.gathers_features`
whether it all-gathers features across ranks itself.
"""

from __future__ import annotations

from torch import Tensor, nn

import losskit
from losskit import distributed as kdist
from losskit.errors import ConfigError
from losskit.train.config import TrainConfig
from losskit.train.data.loader import normalize_images
from losskit.train.models import DualEncoder, TextTransformer, build_image_encoder

__all__ = ["Objective", "build_loss", "build_model", "trainer_gathers"]


def build_model(config: TrainConfig) -> DualEncoder:
    """The :class:`DualEncoder` described by ``config.model`` (random init, seeded by the caller)."""
    m = config.model
    image, image_width = build_image_encoder(
        m.image_encoder, image_size=config.data.image_size, weights=m.image_weights, width=m.image_width
    )
    text = TextTransformer(
        width=m.text_width,
        layers=m.text_layers,
        heads=m.text_heads,
        max_length=config.data.max_text_length,
        downsample=m.text_downsample,
    )
    return DualEncoder(image, image_width, text, m.text_width, m.embed_dim, normalize=m.normalize)


def build_loss(config: TrainConfig) -> losskit.Loss:
    """The loss from the registry, built from the config validated with ``config``."""
    return losskit.build(config.loss_config())


def trainer_gathers(loss: losskit.Loss, *, distributed: bool) -> bool:
    """Whether the trainer must all-gather features for ``loss`` (never in a single process).

    Raises:
        ConfigError: a mixture whose terms disagree (some gather themselves, some not):
            no single choice gives every term the global batch.
    """
    if not distributed:
        return False
    terms = dict(loss.term_losses()) or {"": loss}
    own = {name: term.gathers_features for name, term in terms.items()}
    if all(own.values()):
        return False
    if not any(own.values()):
        return True
    gathering = sorted(n for n, g in own.items() if g)
    others = sorted(n for n, g in own.items() if not g)
    raise ConfigError(
        [("loss.terms", f"under torchrun the terms {gathering} gather features across ranks themselves and "
          f"{others} do not; set distributed: none on {gathering} so the trainer gathers for every term")]
    )  # fmt: skip


class Objective(nn.Module):
    """Model + loss in one module: ``(images uint8, tokens, groups) -> (loss, parts, metrics)``.

    The loss is called as ``loss.compute(image_features [B, E], text_features [B, E],
    group_ids=[B])`` (``clip``, ``siglip``; ``infonce`` takes images as queries); a loss
    with :meth:`~losskit.Loss.term_losses` (``mixture``) gets those inputs for every
    term. With ``gather``, features are all-gathered across ranks here first.
    """

    def __init__(self, model: DualEncoder, loss: losskit.Loss, *, gather: bool) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.gather = gather
        self.terms = list(loss.term_losses())

    def forward(self, images: Tensor, tokens: Tensor, groups: Tensor) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        image_features, text_features = self.model(normalize_images(images), tokens)  # [B, E], [B, E]
        if self.gather:
            image_features = kdist.all_gather_with_grad(image_features, name="image_features")  # [W*B, E]
            text_features = kdist.all_gather_with_grad(text_features, name="text_features")
            groups = kdist.all_gather_no_grad(groups, name="group_ids")
        if self.terms:
            inputs = losskit.Inputs((image_features, text_features), {"group_ids": groups})
            out = self.loss.compute(**{name: inputs for name in self.terms})
        else:
            out = self.loss.compute(image_features, text_features, group_ids=groups)
        return out.loss, out.parts, out.metrics
