"""AdamW groups (no decay on biases, norms, loss parameters), per-branch learning rates, schedule, stages."""

import math

import pytest
import torch

from losskit.train.config import OptimConfig, StageConfig, TrainConfig
from losskit.train.loop import build_model
from losskit.train.optim import build_optimizer, lr_factor, stage_at

from trainer_testloss import RefClipLoss


def _model():
    c = TrainConfig.model_validate(
        {"data": {"image_size": 16}, "model": {"image_width": 16, "text_width": 16, "text_heads": 2, "embed_dim": 8}}
    )
    return build_model(c)


def test_groups_decay_and_branch_lrs():
    model, loss = _model(), RefClipLoss()
    opt = build_optimizer(model, loss, OptimConfig(lr=1e-3, lr_image=1e-4, lr_text=2e-4, weight_decay=0.05))
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["image"]["lr"] == 1e-4 and groups["text"]["lr"] == 2e-4 and groups["heads/no_decay"]["lr"] == 1e-3
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert id(loss.log_scale) in ids["heads/no_decay"]
    for name, p in model.named_parameters():
        decayed = any(id(p) in ids[n] for n in ids if not n.endswith("no_decay"))
        assert decayed == (p.ndim >= 2), name  # biases, norm weights never decayed
    for g in opt.param_groups:
        assert g["weight_decay"] == (0.0 if g["name"].endswith("no_decay") else 0.05)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters())) + 1


def test_warmup_then_cosine():
    c = OptimConfig(warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, 110, c) == pytest.approx(0.1)
    assert lr_factor(9, 110, c) == pytest.approx(1.0)
    assert lr_factor(60, 110, c) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(110, 110, c) == pytest.approx(0.1)
    assert lr_factor(50, 110, OptimConfig(warmup_steps=0, schedule="constant")) == 1.0


def test_stage_lookup():
    stages = [StageConfig(steps=5, freeze=["image"]), StageConfig(steps=3, lr_scale=0.5), StageConfig()]
    assert [stage_at(stages, s)[0] for s in (0, 4, 5, 7, 8, 1000)] == [0, 0, 1, 1, 2, 2]
    assert stage_at([], 3)[1].freeze == []


def test_frozen_branch_gets_no_gradient_and_stays_in_eval_mode():
    model = _model()
    model.set_frozen({"image"})
    model.train()
    assert not model.image_encoder.training and model.text_encoder.training
    images, tokens = torch.randn(4, 3, 16, 16), torch.randint(3, 200, (4, 10))
    a, b = model(images, tokens)
    (a.sum() + b.sum()).backward()
    assert all(p.grad is None for p in model.image_encoder.parameters())
    assert all(p.grad is not None for p in model.text_encoder.parameters())
    assert model.heads["image"].weight.grad is not None
