"""``--resume``: pick the newest usable checkpoint of a run and restore a :class:`Session` from it.

A checkpoint is usable when it is intact (:mod:`losskit.train.checkpoint`), was written
under the run's own config (same :func:`~losskit.train.rundir.config_hash` as
``config.yaml``) and fits the model, loss and optimizer built from that config (same
keys and shapes). Each one that is not gets one warning line saying why, and the
previous one is tried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from losskit.train.checkpoint import load_latest, remove_orphans
from losskit.train.rundir import config_hash
from losskit.train.session import Session
from losskit.train.state import RunState, set_rng_state

__all__ = ["check_fits", "restore"]


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def check_fits(saved: dict[str, Any], module: nn.Module, what: str) -> None:
    """``ValueError`` unless ``saved`` has exactly ``module``'s state keys with the same shapes."""
    if not isinstance(saved, dict):
        raise ValueError(f"{what} state is a {type(saved).__name__}, not a state dict")
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or extra:
        raise ValueError(f"{what} state does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}")
    for key, value in own.items():
        if _shape(saved[key]) != _shape(value):
            raise ValueError(
                f"{what} state does not fit this model: {key} has shape {list(saved[key].shape)}, "
                f"the model's is {list(value.shape)}"
            )


def _check_optimizer(saved: Any, optimizer: torch.optim.Optimizer) -> None:
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    if not isinstance(groups, list) or [len(g.get("params", ())) for g in groups] != sizes:
        raise ValueError(f"optimizer state does not fit this model's parameter groups ({sizes} parameters)")


def _checker(session: Session) -> Any:
    expected = config_hash(session.config)

    def check(state: dict[str, Any]) -> None:
        if state["config_hash"] != expected:
            raise ValueError(
                f"written under another config (hash {state['config_hash']}, the run's config.yaml has {expected}): "
                "another run's checkpoint, or config.yaml was edited; a resume continues the run's own config"
            )
        check_fits(state["objective"], session.objective, "model/loss")
        _check_optimizer(state["optimizer"], session.optimizer)

    return check


def restore(session: Session) -> Path:
    """Load the newest usable checkpoint into ``session``; returns its path.

    Rank 0 first removes the ``.tmp-*`` files a killed save left behind.
    """
    folder = session.run_dir / "checkpoints"
    if session.main:
        for orphan in remove_orphans(folder):
            print(f"removed {orphan}, a checkpoint whose writing was interrupted", flush=True)
    path, checkpoint = load_latest(folder, check=_checker(session))
    session.objective.load_state_dict(checkpoint["objective"])
    session.optimizer.load_state_dict(checkpoint["optimizer"])
    if session.curriculum is not None:
        session.curriculum.load_state_dict(checkpoint["curriculum"])
    session.state = RunState.from_dict(checkpoint)
    set_rng_state(checkpoint["rng"], session.device)
    if session.main:
        session.log.truncate_after(session.state.step)
    return path
