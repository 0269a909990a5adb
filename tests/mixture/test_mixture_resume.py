"""Resume: 100 steps in one go == 50 steps + checkpoint + fresh objects + load + 50 steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import losskit

SPEC = {
    "name": "mixture",
    "terms": {"cls": {"name": "focal"}, "box": {"name": "bbox", "l1_weight": 2.0}},
    "dwa": {"window": 7},
}
SCHEDULES = {
    "weights.box": {"kind": "linear", "start": 0.0, "end": 2.0, "steps": 60, "warmup_steps": 0},
    "terms.cls.gamma": {"kind": "cosine", "start": 3.0, "end": 1.0, "steps": 80, "warmup_steps": 10, "warmup_start": 0.5},
    "terms.box.iou_weight": {"kind": "step", "milestones": [30, 70], "values": [0.5, 1.0, 2.0]},
}


class Detector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(6, 16)
        self.cls = nn.Linear(16, 3)
        self.box = nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.shared(x))
        b = self.box(h)
        return self.cls(h), torch.cat([b[:, :2], b[:, :2] + F.softplus(b[:, 2:]) + 0.01], 1)


def batch(step):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(8, 6, generator=g)
    targets = (torch.rand(8, 3, generator=g) < 0.3).float()
    xy = torch.rand(8, 2, generator=g)
    return x, targets, torch.cat([xy, xy + 0.2 + torch.rand(8, 2, generator=g)], 1)


def fresh(weighting):
    torch.manual_seed(0)
    model = Detector()
    spec = {**SPEC, "weighting": weighting}
    schedules = dict(SCHEDULES)
    if weighting == "gradnorm":
        schedules.pop("weights.box")  # the GradNorm weights are learnable
    mixture = losskit.build(spec)
    if weighting == "gradnorm":
        mixture.set_shared_parameters(model.shared.parameters())
    curriculum = losskit.Curriculum(mixture, schedules)
    opt = torch.optim.Adam([{"params": model.parameters()}, *mixture.parameter_groups()], lr=1e-2)
    return model, mixture, curriculum, opt


def run(objects, steps):
    model, mixture, curriculum, opt = objects
    record = []
    for step in steps:
        values = curriculum.step(step)
        x, targets, boxes = batch(step)
        logits, pred = model(x)
        opt.zero_grad()
        loss = mixture(cls=(logits, targets), box=(pred, boxes))
        loss.backward()
        opt.step()
        record.append((values, loss.item()))
    return record


@pytest.mark.parametrize("weighting", ["static", "uncertainty", "dwa", "gradnorm"])
def test_resumed_run_is_identical(weighting, tmp_path):
    straight = run(fresh(weighting), range(100))

    first = fresh(weighting)
    head = run(first, range(50))
    model, mixture, curriculum, opt = first
    torch.save(
        {"model": model.state_dict(), "loss": mixture.state_dict(), "opt": opt.state_dict(), "curriculum": curriculum.state_dict()},
        tmp_path / "ckpt.pt",
    )
    del first, model, mixture, curriculum, opt

    second = fresh(weighting)
    model, mixture, curriculum, opt = second
    state = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    model.load_state_dict(state["model"])
    mixture.load_state_dict(state["loss"])
    opt.load_state_dict(state["opt"])
    curriculum.load_state_dict(state["curriculum"])
    tail = run(second, range(50, 100))

    assert head + tail == straight  # identical scheduled values and bit-identical losses
    assert len({loss for _, loss in straight}) > 90  # the run really moves
    assert straight[-1][0]["terms.box.iou_weight"] == 2.0
