"""The state of a run that is not in a module: :class:`RunState` and the RNG states.

Model, loss, optimizer and curriculum keep their own state (``state_dict()``); what
decides the rest of a run (where it is, what it measured, what it skipped) is a
:class:`RunState`, saved in every checkpoint next to theirs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["RunState", "get_rng_state", "set_rng_state"]


@dataclass
class RunState:
    """Where a run is and what it has measured.

    Attributes:
        step: optimiser steps done.
        epoch: current epoch of the sampler.
        position: micro-batches consumed in the current epoch (a resume skips them).
        before: recalls before training (``{}`` until measured).
        after: recalls at the end (``{}`` until the run finished).
        skipped: unreadable image files met so far (``on_bad_image: skip``).
    """

    step: int = 0
    epoch: int = 0
    position: int = 0
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint entries of this state."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        """The state saved by :meth:`to_dict` (extra checkpoint entries are ignored)."""
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    def skip(self, files: list[str]) -> None:
        """Record unreadable files (each once)."""
        self.skipped += [f for f in dict.fromkeys(files) if f not in self.skipped]


def get_rng_state(device: torch.device) -> dict[str, Tensor]:
    """The CPU (and, on CUDA, the device's) random generator state."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
