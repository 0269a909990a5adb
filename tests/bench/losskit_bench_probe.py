"""A real plugin module used by the bench tests (imported by name, also in the memory child).

``alloc`` allocates (and touches) ``K`` float32 values in every forward, so its peak
extra memory is known; its baselines run out of memory or raise. ``killer`` dies by
SIGKILL inside the isolated memory process, as under the kernel's OOM killer.
"""

from __future__ import annotations

import os
import signal

import torch

import losskit
from losskit.bench import BenchSpec
from losskit.bench.memory import CHILD_ENV

#: float32 values the ``alloc`` loss allocates per forward at its tiny size (64 MiB).
ALLOC_K = 16 * 2**20


class ProbeConfig(losskit.LossConfig):
    """No fields beyond ``reduction``."""


class AllocLoss(losskit.Loss[ProbeConfig]):
    """Sum of the input plus a zero-weighted sum over a fresh ``[K]`` tensor."""

    config_class = ProbeConfig

    def compute(self, x: torch.Tensor, *, k: int) -> losskit.LossOutput:
        scratch = torch.ones(k)  # [K], written, so it is resident
        return losskit.LossOutput(loss=x.sum() + 0.0 * scratch.sum())


class KillerLoss(losskit.Loss[ProbeConfig]):
    """Like a plain sum, but killed by SIGKILL in the memory process."""

    config_class = ProbeConfig

    def compute(self, x: torch.Tensor, *, k: int) -> losskit.LossOutput:
        if os.environ.get(CHILD_ENV) == "1":
            os.kill(os.getpid(), signal.SIGKILL)
        return losskit.LossOutput(loss=x.sum())


def inputs(size, *, dtype, device, generator) -> losskit.Inputs:
    x = torch.randn(size["B"], generator=generator, dtype=dtype).to(device).requires_grad_(True)
    return losskit.Inputs((x,), {"k": size["K"]})


def hog(x: torch.Tensor, *, k: int) -> torch.Tensor:
    """A baseline asking for 2**50 bytes: the allocator refuses."""
    return x.sum() + torch.empty(2**48, dtype=torch.float32).sum()


def broken(x: torch.Tensor, *, k: int) -> torch.Tensor:
    raise ValueError("broken baseline")


SIZES = {"tiny": {"B": 4, "K": ALLOC_K}, "small": {"B": 8, "K": ALLOC_K}}


@losskit.hookimpl
def register_losses(register):
    register(
        "alloc",
        AllocLoss,
        config=ProbeConfig,
        bench=BenchSpec(example_inputs=inputs, sizes=SIZES, baselines={"hog": hog, "broken": broken}),
    )
    register(
        "killer",
        KillerLoss,
        config=ProbeConfig,
        bench=BenchSpec(example_inputs=inputs, sizes=SIZES, throughput_keys=("B", "K"), throughput_unit="cells"),
    )
