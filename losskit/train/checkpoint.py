"""Checkpoints: atomic writes, keep the last K, loadable with ``torch.load(weights_only=True)``.

A checkpoint is ``RUN_DIR/checkpoints/step-00000100.pt``, a dict of tensors, numbers,
strings, lists and dicts only (so ``weights_only=True`` loads it): model, loss,
optimizer and scheduler state, curriculum state, RNG states, step, epoch, the
sampler position and the resolved config. It is written to a temporary file in the
same folder, flushed to disk, then renamed over the final name, so a crash never
leaves a half-written ``step-*.pt``. On resume the newest checkpoint that loads is
used; a corrupt one is reported (and skipped) with a clear message.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from losskit.errors import LosskitError

__all__ = ["CheckpointError", "list_checkpoints", "load_latest", "save_checkpoint"]

_NAME = re.compile(r"^step-(\d{8,})\.pt$")


class CheckpointError(LosskitError):
    """No usable checkpoint in a run directory."""


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files of ``folder``, oldest step first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], *, keep: int) -> Path:
    """Write ``state`` atomically as ``folder/step-<step>.pt``; delete all but the newest ``keep``."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:08d}.pt"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def load_latest(folder: Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint of ``folder`` that loads (``weights_only=True``), with its path.

    A checkpoint that fails to load is reported with a warning naming it and the
    reason, and the previous one is tried.

    Raises:
        CheckpointError: no checkpoint, or none loads.
    """
    candidates = list_checkpoints(folder)
    if not candidates:
        raise CheckpointError(f"no checkpoint (step-*.pt) in {folder}; nothing to resume")
    problems = []
    for path in reversed(candidates):
        try:
            return path, torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises RuntimeError, pickle errors, EOFError, ... on damage
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            problems.append(f"{path.name} ({reason})")
            warnings.warn(
                f"checkpoint {path} is corrupt or unreadable ({reason}); trying the previous one",
                RuntimeWarning,
                stacklevel=2,
            )
    raise CheckpointError(f"no checkpoint in {folder} could be loaded: " + "; ".join(problems))
