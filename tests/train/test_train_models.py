"""Model pieces: torchvision towers with local weights (weights_only), compact CNN, text tower shapes."""

import pytest
import torch
import torchvision

from losskit.errors import ConfigError
from losskit.train.models import CompactCNN, TextTransformer, build_image_encoder


def test_resnet18_loads_a_local_weights_file(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model, width = build_image_encoder("resnet18", image_size=32, weights=str(tmp_path / "resnet18.pth"), width=0)
    assert width == 512 and isinstance(model.fc, torch.nn.Identity)
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    with pytest.raises(ConfigError, match="model.image_weights"):
        build_image_encoder("resnet18", image_size=32, weights=str(tmp_path / "missing.pth"), width=0)


def test_vit_needs_a_multiple_of_16():
    with pytest.raises(ConfigError, match="data.image_size"):
        build_image_encoder("vit_b_16", image_size=40, weights=None, width=0)


def test_compact_cnn_and_text_tower_shapes():
    assert CompactCNN(image_size=32, width=24)(torch.randn(3, 3, 32, 32)).shape == (3, 24)
    with pytest.raises(ValueError, match="image_size"):
        CompactCNN(image_size=30)
    text = TextTransformer(width=16, layers=1, heads=2, max_length=20, downsample=4)
    tokens = torch.tensor([[1, 70, 71, 2, 0, 0, 0], [1, 80, 81, 82, 83, 84, 2]])
    assert text(tokens).shape == (2, 16)
    # padding does not change a caption's features
    padded = torch.cat([tokens, torch.zeros(2, 5, dtype=torch.long)], 1)
    assert torch.allclose(text(padded), text(tokens), atol=1e-5)
