"""The dual encoder: an image tower, a byte-level text Transformer, and linear projections.

Image towers: ``compact`` (a small CNN that trains in minutes on a CPU; the default),
or torchvision's ``resnet18``, ``resnet50`` and ``vit_b_16`` with ``weights=None`` or
a local weights file (loaded with ``torch.load(..., weights_only=True)``). Both towers
end in a linear projection to the shared embedding size; features are L2-normalised
(as in CLIP, Radford et al. 2021; open_clip's ``normalize=True``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losskit.errors import ConfigError
from losskit.train.tokenizer import ByteTokenizer

__all__ = ["CompactCNN", "DualEncoder", "TextTransformer", "build_image_encoder"]


class CompactCNN(nn.Module):
    """Stride-2 3×3 convolutions with GroupNorm, then flatten (keeps position) and a linear layer.

    GroupNorm, not BatchNorm: the output of one sample never depends on the others in
    the batch, so DDP with N processes equals one process on the same global batch.

    Args:
        image_size: input side ``S``; must be divisible by ``2 ** len(channels[1:])``.
        channels: stem width, then one stride-2 stage per further entry.
        width: output size.

    Shapes: ``[B, 3, S, S] -> [B, width]``.
    """

    def __init__(self, image_size: int = 32, channels: tuple[int, ...] = (16, 32, 64, 64), width: int = 256) -> None:
        super().__init__()
        stride_total = 2 ** (len(channels) - 1)
        if image_size % stride_total:
            raise ValueError(f"image_size: expected a multiple of {stride_total} for {len(channels)} stages, got {image_size}")
        layers: list[nn.Module] = []
        previous = 3
        for i, c in enumerate(channels):
            layers += [
                nn.Conv2d(previous, c, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                nn.GroupNorm(min(8, c), c),
                nn.ReLU(inplace=True),
            ]
            previous = c
        self.features = nn.Sequential(*layers)
        side = image_size // stride_total
        self.head = nn.Linear(previous * side * side, width)
        self.width = width

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images).flatten(1))  # [B, C*s*s] -> [B, width]


def build_image_encoder(name: str, *, image_size: int, weights: str | None, width: int) -> tuple[nn.Module, int]:
    """The image tower ``name`` and its output width (the classification head removed).

    Args:
        name: ``compact``, ``resnet18``, ``resnet50`` or ``vit_b_16``.
        image_size: input side (``vit_b_16`` needs a multiple of 16).
        weights: ``None`` (random init) or a local torchvision state-dict file.
        width: output width of ``compact`` (the torchvision towers have their own).
    """
    if name == "compact":
        if weights is not None:
            raise ConfigError([("model.image_weights", "the compact encoder has no pretrained weights; use null")])
        model = CompactCNN(image_size=image_size, width=width)
        return model, model.width
    import torchvision

    if name == "vit_b_16":
        if image_size % 16:
            raise ConfigError([("data.image_size", f"vit_b_16 needs a multiple of 16, got {image_size}")])
        model = torchvision.models.vit_b_16(weights=None, image_size=image_size)
    else:
        model = getattr(torchvision.models, name)(weights=None)
    if weights is not None:
        _load_weights(model, name, Path(weights))
    if name == "vit_b_16":
        out = model.heads.head.in_features
        model.heads = nn.Identity()
    else:
        out = model.fc.in_features
        model.fc = nn.Identity()
    return model, out


def _load_weights(model: nn.Module, name: str, path: Path) -> None:
    """Load a local torchvision state dict into ``model`` (``torch.load(..., weights_only=True)``).

    Raises:
        ConfigError: naming ``model.image_weights`` when the file is missing, is not a
            plain state dict (e.g. a pickled module, refused by ``weights_only``), or does
            not fit the architecture ``name``.
    """
    field = "model.image_weights"
    if not path.is_file():
        raise ConfigError([(field, f"no such file: {path}")])
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError (not weights only), RuntimeError (not a torch file), ...
        inner = exc.__context__ if isinstance(exc.__context__, Exception) else exc  # torch wraps the unpickler's reason
        reason = (str(inner).strip().splitlines() or [type(inner).__name__])[0].split(". Please")[0][:200]
        expected = "a plain state dict of tensors is expected"
        raise ConfigError([(field, f"{path} does not load with torch.load(weights_only=True); {expected} ({reason})")]) from None
    if not isinstance(state, dict):
        raise ConfigError([(field, f"{path} holds a {type(state).__name__}, expected a state dict {{name: tensor}}")])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError([(field, f"{path} does not fit torchvision's {name}: {detail[:400]}")]) from None


class TextTransformer(nn.Module):
    """Byte embeddings, a strided 1-D convolution, a pre-norm Transformer, mean pooling.

    The convolution merges ``downsample`` neighbouring bytes into one position before
    the Transformer (as in CANINE, Clark et al. 2022), so attention runs over
    ``L / downsample`` positions: byte-level input at a fraction of the cost.

    Args:
        width: model width ``W``; ``heads`` must divide it.
        layers: encoder layers.
        heads: attention heads.
        max_length: longest token sequence ``L`` in bytes (learned positional embeddings).
        downsample: bytes per Transformer position (1 disables the convolution).

    Shapes: ``tokens [B, L]`` (int, 0 = padding) ``-> [B, W]``.
    """

    def __init__(
        self, *, width: int = 128, layers: int = 2, heads: int = 4, max_length: int = 64, downsample: int = 1
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"heads: expected a divisor of width={width}, got {heads}")
        self.downsample = downsample
        self.token_embedding = nn.Embedding(ByteTokenizer.vocab_size, width, padding_idx=ByteTokenizer.PAD)
        self.merge = nn.Conv1d(width, width, downsample, stride=downsample) if downsample > 1 else nn.Identity()
        self.position_embedding = nn.Parameter(torch.randn(-(-max_length // downsample), width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.width = width

    def forward(self, tokens: Tensor) -> Tensor:
        extra = -tokens.shape[1] % self.downsample
        tokens = F.pad(tokens, (0, extra), value=ByteTokenizer.PAD)  # [B, L'] with L' % downsample == 0
        x = self.token_embedding(tokens)  # [B, L', W]
        x = self.merge(x.transpose(1, 2)).transpose(1, 2)  # [B, P, W], P = L' / downsample
        valid = (tokens != ByteTokenizer.PAD).view(tokens.shape[0], -1, self.downsample).any(-1)  # [B, P]
        x = x + self.position_embedding[: x.shape[1]]
        x = self.norm(self.encoder(x, src_key_padding_mask=~valid))
        keep = valid.unsqueeze(-1).to(x.dtype)  # [B, P, 1]
        return (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # [B, W]


class DualEncoder(nn.Module):
    """Image and text towers with linear projections to a shared ``embed_dim``.

    ``forward(images [B, 3, S, S] float, tokens [B, L] int) -> (image_features [B, E],
    text_features [B, E])``, each L2-normalised when ``normalize`` is true. The branches
    are the attributes ``image_encoder``, ``text_encoder`` and ``heads``
    (the two projections), which get their own learning rates and can be frozen.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        image_width: int,
        text_encoder: nn.Module,
        text_width: int,
        embed_dim: int,
        *,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.heads = nn.ModuleDict(
            {"image": nn.Linear(image_width, embed_dim, bias=False), "text": nn.Linear(text_width, embed_dim, bias=False)}
        )
        self.normalize = normalize
        self.frozen: set[str] = set()

    def branch(self, name: str) -> nn.Module:
        """``"image"``, ``"text"`` or ``"heads"``: the sub-module of that branch."""
        return {"image": self.image_encoder, "text": self.text_encoder, "heads": self.heads}[name]

    def set_frozen(self, branches: set[str]) -> None:
        """Freeze these branches: run them without autograd and in eval mode (norm statistics kept)."""
        self.frozen = set(branches)
        self.train(self.training)

    def train(self, mode: bool = True) -> DualEncoder:
        super().train(mode)
        for name in self.frozen:
            self.branch(name).eval()
        return self

    def _run(self, name: str, module: nn.Module, x: Tensor) -> Tensor:
        if name in self.frozen:
            with torch.no_grad():
                return module(x)
        return module(x)

    def encode_image(self, images: Tensor) -> Tensor:
        x = self._run("image", self.image_encoder, images)
        x = self._run("heads", self.heads["image"], x)
        return F.normalize(x, dim=-1) if self.normalize else x

    def encode_text(self, tokens: Tensor) -> Tensor:
        x = self._run("text", self.text_encoder, tokens)
        x = self._run("heads", self.heads["text"], x)
        return F.normalize(x, dim=-1) if self.normalize else x

    def forward(self, images: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode_image(images), self.encode_text(tokens)
