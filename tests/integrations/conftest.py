"""Shared pieces of the framework integration tests: a tiny image–text dual encoder and paired data.

Nothing is downloaded: models are built in code, the data is generated, and the Hugging
Face hub is switched off for the whole directory.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

N_CLASSES, IMAGE_DIM, TEXT_VOCAB, TEXT_LEN, EMBED_DIM = 8, 12, 20, 4, 8


class TinyDualEncoder(nn.Module):
    """CLIP-shaped model: ``image [B, IMAGE_DIM]`` and ``input_ids [B, TEXT_LEN]`` -> two ``[B, EMBED_DIM]`` embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.image_encoder = nn.Sequential(nn.Linear(IMAGE_DIM, 16), nn.GELU(), nn.Linear(16, EMBED_DIM))
        self.text_encoder = nn.EmbeddingBag(TEXT_VOCAB, EMBED_DIM, mode="mean")

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image_embeds": self.image_encoder(pixel_values), "text_embeds": self.text_encoder(input_ids)}


class PairedData(torch.utils.data.Dataset):
    """Image–caption pairs whose caption tokens depend on the image's class, so CLIP training can learn them."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.classes = torch.randint(0, N_CLASSES, (n,), generator=g)
        prototypes = torch.randn(N_CLASSES, IMAGE_DIM, generator=g)
        self.pixel_values = prototypes[self.classes] + 0.3 * torch.randn(n, IMAGE_DIM, generator=g)  # [n, IMAGE_DIM]
        offsets = torch.randint(0, 2, (n, TEXT_LEN), generator=g)
        self.input_ids = (self.classes[:, None] * 2 + offsets) % TEXT_VOCAB  # [n, TEXT_LEN]

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixel_values[i], "input_ids": self.input_ids[i]}


@pytest.fixture
def dual_encoder() -> TinyDualEncoder:
    torch.manual_seed(0)
    return TinyDualEncoder()


@pytest.fixture
def dual_encoder_class() -> type[TinyDualEncoder]:
    """The class, for code that rebuilds the model itself (e.g. Lightning's ``load_from_checkpoint``)."""
    return TinyDualEncoder


@pytest.fixture
def paired_data() -> PairedData:
    return PairedData(64)
