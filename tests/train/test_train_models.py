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


def test_weights_file_must_be_a_fitting_plain_state_dict(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled module: weights_only refuses it
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("not a torch file")
    cases = [
        ("module.pt", r"weights_only=True"),
        ("list.pt", r"holds a list, expected a state dict"),
        ("other.pt", r"does not fit torchvision's resnet18"),
        ("text.pt", r"weights_only=True"),
    ]
    for name, message in cases:
        with pytest.raises(ConfigError, match=rf"model\.image_weights: .*{name}.*{message}"):
            build_image_encoder("resnet18", image_size=32, weights=str(tmp_path / name), width=0)


@pytest.mark.parametrize(("name", "width"), [("resnet18", 512), ("resnet50", 2048), ("vit_b_16", 768)])
def test_torchvision_towers_end_in_features(name, width):
    with torch.device("meta"):  # shapes only: skips initialising up to 86M parameters
        model, out = build_image_encoder(name, image_size=32, weights=None, width=0)
        features = model.eval()(torch.empty(2, 3, 32, 32))
    assert out == width and features.shape == (2, width)


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
