"""Checkpoints: atomic writes, a content checksum, keep the last K, ``weights_only`` loading.

A checkpoint is ``RUN_DIR/checkpoints/step-00000100.pt``, a dict of tensors, numbers,
strings, lists and dicts only (so ``torch.load(weights_only=True)`` loads it): model,
loss, optimizer and curriculum state, RNG states, step, epoch, the sampler position,
the resolved config and its hash. Its ``"checksum"`` entry is the SHA-256 of everything
else (:func:`state_digest`: every tensor's dtype, shape and bytes, every other value),
so a flipped bit anywhere is found on resume.

It is written to a temporary file ``.tmp-*`` in the same folder, flushed to disk, then
renamed over the final name, so a crash never leaves a half-written ``step-*.pt``; a
failed write (a full disk) removes the temporary file, keeps the previous checkpoints
and raises :class:`CheckpointError` naming the file and the reason. Temporary files
left by a killed process are removed by :func:`remove_orphans` when a run resumes.

On resume the newest checkpoint that loads, has its checksum and every key, and passes
the caller's ``check`` is used; every one skipped gets one warning line saying why.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from losskit.errors import LosskitError

__all__ = [
    "REQUIRED_KEYS",
    "CheckpointError",
    "list_checkpoints",
    "load_latest",
    "remove_orphans",
    "save_checkpoint",
    "state_digest",
]

_PREFIX, _SUFFIX = "step-", ".pt"

#: the entries every checkpoint written by the trainer has (``checksum`` is added on save)
REQUIRED_KEYS = ("objective", "optimizer", "curriculum", "rng", "step", "epoch", "position", "before", "after",
                 "skipped", "config", "config_hash")  # fmt: skip


class CheckpointError(LosskitError):
    """No usable checkpoint in a run directory, or one that could not be written."""


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files of ``folder``, oldest step first."""
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        number = p.name[len(_PREFIX) : -len(_SUFFIX)]
        if p.name.startswith(_PREFIX) and p.name.endswith(_SUFFIX) and len(number) >= 8 and number.isdigit():
            found.append((int(number), p))
    return [p for _, p in sorted(found)]


def _update(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            h.update(repr(key).encode())
            _update(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for item in value:
            _update(h, item)
    else:
        h.update(f"V{type(value).__name__}:{value!r};".encode())


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint's content: tensors by dtype, shape and bytes, other values by ``repr``."""
    h = hashlib.sha256()
    _update(h, {k: v for k, v in state.items() if k != "checksum"})
    return h.hexdigest()


def remove_orphans(folder: Path) -> list[Path]:
    """Delete the ``.tmp-*`` files a killed save left in ``folder``; returns them."""
    orphans = sorted(folder.glob(".tmp-*")) if folder.is_dir() else []
    for path in orphans:
        path.unlink(missing_ok=True)
    return orphans


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], *, keep: int) -> Path:
    """Write ``state`` (plus its ``checksum``) atomically as ``folder/step-<step>.pt``; keep the newest ``keep``.

    Raises:
        CheckpointError: the file could not be written (e.g. the disk is full); the
            temporary file is removed and the previous checkpoints are kept.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{_PREFIX}{step:08d}{_SUFFIX}"
    buffer = io.BytesIO()
    torch.save({**state, "checksum": state_digest(state)}, buffer)
    fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=_SUFFIX, dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        _write(tmp, buffer.getvalue())
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        previous = [p.name for p in list_checkpoints(folder)]
        free = shutil.disk_usage(folder).free / 2**20
        raise CheckpointError(
            f"cannot write checkpoint {final} ({buffer.tell() / 2**20:.1f} MiB): {exc.strerror or exc} "
            f"({free:.0f} MiB free on that disk; a per-file size limit, `ulimit -f`, gives the same); "
            f"kept the previous checkpoint(s): {', '.join(previous) or 'none'}"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def _verified(path: Path) -> dict[str, Any]:
    """Load ``path`` and check its checksum and keys; raises ``ValueError`` saying what is wrong."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, pickle errors, EOFError, ... on damage
        raise ValueError(f"unreadable, {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(state, dict):
        raise ValueError(f"holds a {type(state).__name__}, not a checkpoint dict")
    missing = [k for k in ("checksum", *REQUIRED_KEYS) if k not in state]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)} (not written by losskit train, or damaged)")
    if state["checksum"] != state_digest(state):
        raise ValueError("content does not match its SHA-256 checksum (damaged on disk)")
    return state


def load_latest(folder: Path, check: Callable[[dict[str, Any]], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint of ``folder`` that is intact and passes ``check``, with its path.

    A checkpoint that does not load, lacks its checksum or a key, fails the checksum, or
    for which ``check(state)`` raises ``ValueError`` (e.g. another run's config, another
    model's shapes) gets one warning line naming it and the reason; the previous one is
    tried.

    Raises:
        CheckpointError: no checkpoint, or none usable (the message lists each reason).
    """
    candidates = list_checkpoints(folder)
    if not candidates:
        raise CheckpointError(f"no checkpoint (step-*.pt) in {folder}; nothing to resume")
    problems = []
    for path in reversed(candidates):
        try:
            state = _verified(path)
            if check is not None:
                check(state)
            return path, state
        except ValueError as exc:
            problems.append(f"{path.name}: {exc}")
            warnings.warn(f"checkpoint {path} skipped: {exc}; trying the previous one", RuntimeWarning, stacklevel=2)
    raise CheckpointError(f"no usable checkpoint in {folder}: " + "; ".join(problems))
