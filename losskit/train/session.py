"""What one training process holds: :class:`Session`, built by :func:`build_session`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

import losskit
from losskit.train import ddp
from losskit.train.config import TrainConfig
from losskit.train.data.loader import ResumableSampler, Splits, build_splits, train_loader
from losskit.train.metrics import MetricsLog
from losskit.train.models import DualEncoder
from losskit.train.objective import Objective, build_loss, build_model, trainer_gathers
from losskit.train.optim import build_optimizer
from losskit.train.state import RunState

__all__ = ["Session", "StepWindow", "build_session"]


@dataclass
class StepWindow:
    """The optimiser step being accumulated, and the logging window since the last line."""

    micro: int = 0
    loss: float = 0.0
    last_loss: float = float("nan")
    parts: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    lrs: dict[str, float] = field(default_factory=dict)
    stage_index: int = -1
    started: float = field(default_factory=time.perf_counter)
    samples: int = 0


@dataclass
class Session:
    """Config, process, data, model, loss, optimizer and run state of one training process."""

    config: TrainConfig
    context: ddp.DistContext
    run_dir: Path
    splits: Splits
    model: DualEncoder
    loss: losskit.Loss
    objective: Objective
    runner: nn.Module
    optimizer: torch.optim.Optimizer
    curriculum: losskit.Curriculum | None
    loader: DataLoader
    sampler: ResumableSampler
    use_bf16: bool
    log: MetricsLog
    state: RunState = field(default_factory=RunState)
    window: StepWindow = field(default_factory=StepWindow)

    @property
    def device(self) -> torch.device:
        return self.context.device

    @property
    def main(self) -> bool:
        return self.context.is_main


def _wrap(objective: Objective, config: TrainConfig, context: ddp.DistContext) -> nn.Module:
    runner: nn.Module = objective
    device = context.device
    if context.distributed:
        runner = nn.parallel.DistributedDataParallel(
            objective,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=any(s.freeze for s in config.stages),
        )
    if config.compile:
        runner = torch.compile(runner)  # type: ignore[assignment]
    return runner


def build_session(config: TrainConfig, context: ddp.DistContext, run_dir: Path) -> Session:
    """Seed, then build data, model, loss, objective, optimizer and loader (nothing written yet)."""
    device = context.device
    torch.manual_seed(config.seed)
    splits = build_splits(config.data, seed=config.seed)
    model = build_model(config)
    loss = build_loss(config)
    curriculum = losskit.Curriculum(loss, config.curriculum) if config.curriculum else None
    objective = Objective(model, loss, gather=trainer_gathers(loss, distributed=context.distributed)).to(device)
    optimizer = build_optimizer(model, loss, config.optim)
    loader, sampler = train_loader(
        splits, config.data, seed=config.seed, num_replicas=context.world_size, rank=context.rank,
        pin_memory=device.type == "cuda",
    )  # fmt: skip
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    state = RunState(skipped=list(splits.train.skipped) + list(splits.val.skipped))
    return Session(
        config, context, run_dir, splits, model, loss, objective, _wrap(objective, config, context), optimizer,
        curriculum, loader, sampler, use_bf16, MetricsLog(run_dir / "metrics.jsonl"), state,
    )  # fmt: skip
