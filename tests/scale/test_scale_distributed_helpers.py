"""losskit.distributed in a single process (no process group): modes and defaults."""

from __future__ import annotations

import pytest
import torch

import losskit
from losskit import distributed as D


def test_single_process_defaults():
    assert not D.is_initialized()
    assert D.world_size() == 1 and D.rank() == 0
    t = torch.randn(3, 2, requires_grad=True)
    assert D.all_gather_with_grad(t) is t and D.all_gather_no_grad(t) is t
    D.average_gradients(torch.nn.Linear(2, 2))  # no-op without a group


def test_modes():
    assert D.use_gather("none") is False
    assert D.use_gather("auto") is False  # no process group
    with pytest.raises(RuntimeError, match="distributed='gather'"):
        D.use_gather("gather")
    with pytest.raises(ValueError, match="distributed"):
        D.use_gather("always")  # type: ignore[arg-type]


def test_gather_mode_without_process_group_is_a_clear_error():
    loss_fn = losskit.build("clip", distributed="gather")
    with pytest.raises(RuntimeError, match="process group"):
        loss_fn(torch.randn(4, 3), torch.randn(4, 3))
    with pytest.raises(losskit.errors.ConfigError, match="distributed"):
        losskit.build("clip", distributed="sometimes")
