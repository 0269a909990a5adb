"""AdamW parameter groups per branch, the warm-up + cosine schedule, and stages.

Branches: ``image`` (image tower), ``text`` (text tower), ``heads`` (the two
projections and the loss's own parameters, e.g. a learnable temperature or bias).
Weight decay (decoupled, AdamW; Loshchilov & Hutter 2019) applies only to matrices and
convolution kernels of the towers and projections: never to biases, norm weights, the
positional embedding vector parameters of rank < 2, or any parameter of the loss — the
same exclusions as open_clip (``gain_or_bias`` and ``logit_scale``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from losskit.train.config import OptimConfig, StageConfig

__all__ = ["build_optimizer", "lr_factor", "set_learning_rates", "stage_at"]

BRANCHES = ("image", "text", "heads")


def build_optimizer(model: nn.Module, loss: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW over ``model`` (a :class:`~losskit.train.models.DualEncoder`) and ``loss``.

    Groups are named ``"<branch>"`` (decayed) and ``"<branch>/no_decay"``; each keeps
    its peak learning rate in ``"base_lr"``.
    """
    lrs = {"image": config.lr_image, "text": config.lr_text, "heads": config.lr_head}
    groups: list[dict[str, Any]] = []
    for branch in BRANCHES:
        params = list(model.branch(branch).parameters())  # type: ignore[operator]
        if branch == "heads":
            params += list(loss.parameters())
        loss_ids = {id(p) for p in loss.parameters()}
        decay = [p for p in params if p.ndim >= 2 and id(p) not in loss_ids]
        no_decay = [p for p in params if p.ndim < 2 or id(p) in loss_ids]
        lr = lrs[branch] if lrs[branch] is not None else config.lr
        for name, members, wd in ((branch, decay, config.weight_decay), (f"{branch}/no_decay", no_decay, 0.0)):
            if members:
                groups.append({"params": members, "lr": lr, "base_lr": lr, "weight_decay": wd, "name": name})
    return torch.optim.AdamW(groups, betas=config.betas, eps=config.eps)


def lr_factor(step: int, total: int, config: OptimConfig) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based) of ``total``.

    Linear warm-up ``(step + 1) / warmup_steps`` (as open_clip), then cosine from 1 down
    to ``min_lr_ratio`` at ``total`` (or constant 1).
    """
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    span = max(total - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def stage_at(stages: list[StageConfig], step: int) -> tuple[int, StageConfig]:
    """The stage (index, config) that optimiser step ``step`` falls in; no stages -> one default stage."""
    start = 0
    for index, stage in enumerate(stages):
        if stage.steps is None or step < start + stage.steps:
            return index, stage
        start += stage.steps
    return (len(stages) - 1, stages[-1]) if stages else (0, StageConfig())


def set_learning_rates(optimizer: torch.optim.Optimizer, factor: float) -> dict[str, float]:
    """Set every group's ``lr = base_lr * factor``; returns ``{group name: lr}``."""
    out = {}
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
        out[group["name"]] = group["lr"]
    return out
