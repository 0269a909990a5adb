"""How the trainer treats a loss: by its declared Loss.gathers_features and Loss.term_losses(), nothing else."""

import pytest
import torch
from torch import nn

import losskit
from losskit.errors import ConfigError
from losskit.train.objective import Objective, trainer_gathers


class Dot(losskit.Loss):
    """-mean(<image, text>), recording the group ids it was given."""

    def compute(self, image_features, text_features, *, group_ids=None):
        self.seen = group_ids
        return losskit.LossOutput(loss=-(image_features * text_features).sum(1).mean())


class GatheringDot(Dot):
    gathers_features = True


class Pair(losskit.Loss):
    """Two named terms, called as compute(**{name: inputs})."""

    def __init__(self, first, second):
        super().__init__()
        self.terms = nn.ModuleDict({"a": first, "b": second})

    def term_losses(self):
        return dict(self.terms)

    def compute(self, **inputs):
        values = {n: self.terms[n](*inputs[n].args, **inputs[n].kwargs) for n in self.terms}
        return losskit.LossOutput(loss=sum(values.values()), parts=values)


def test_a_single_process_never_gathers():
    assert not trainer_gathers(Dot(), distributed=False) and not trainer_gathers(GatheringDot(), distributed=False)


def test_the_trainer_gathers_unless_the_loss_declares_it_does():
    assert trainer_gathers(Dot(), distributed=True)
    assert not trainer_gathers(GatheringDot(), distributed=True)
    assert trainer_gathers(Pair(Dot(), Dot()), distributed=True)
    assert not trainer_gathers(Pair(GatheringDot(), GatheringDot()), distributed=True)
    with pytest.raises(ConfigError, match=r"loss\.terms: under torchrun the terms \['a'\] gather .* \['b'\] do not"):
        trainer_gathers(Pair(GatheringDot(), Dot()), distributed=True)


class Identity(nn.Module):
    def forward(self, images, tokens):
        return images.float().flatten(1), tokens.float()


def test_objective_routes_inputs_to_each_term():
    first, second = Dot(), Dot()
    objective = Objective(Identity(), Pair(first, second), gather=False)
    images = torch.zeros(2, 3, 1, 1, dtype=torch.uint8)
    loss, parts, _ = objective(images, torch.ones(2, 3), torch.tensor([4, 4]))
    assert set(parts) == {"a", "b"} and torch.equal(first.seen, torch.tensor([4, 4])) and torch.equal(second.seen, first.seen)
    assert torch.isclose(loss, parts["a"] + parts["b"])
