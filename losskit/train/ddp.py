"""Process setup for single-process and ``torchrun`` (DDP) training.

Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) a process group is
initialised: NCCL when training on CUDA, gloo on CPU. Contrastive features are
gathered across ranks by the loss itself when its config has a ``distributed`` field
(set to ``"auto"``), otherwise by the trainer with
:func:`losskit.distributed.all_gather_with_grad`; with DDP's gradient averaging both
give exactly the single-process gradient of the global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from losskit.errors import ConfigError

__all__ = ["DistContext", "setup", "teardown"]


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: ``rank`` of ``world_size``, on ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str) -> DistContext:
    """Pick the device (``auto``: CUDA when available) and join the process group under torchrun."""
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            [("device", "'cuda' was requested but no CUDA device is available (torch.cuda.is_available() is False); "
              "use device=auto (CUDA when present, else CPU) or device=cpu")]
        )  # fmt: skip
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=10))
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def teardown(context: DistContext) -> None:
    """Leave the process group (if this process joined one)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if context.distributed:
        dist.barrier()
