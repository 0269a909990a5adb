"""The run directory: what a new run may start in, what a resume reads, the config hash.

Policy (docs/troubleshooting.md, "Run directories"):

- a new run starts only in a folder that does not exist or is empty; with
  ``overwrite`` the files a run writes there (``config.yaml``, ``metrics.jsonl``,
  ``curves.png``, ``checkpoints/``) are deleted first, nothing else;
- ``--resume RUN_DIR`` continues with the run's own ``config.yaml``: that config wins,
  and a checkpoint whose config hash differs from it (another run's checkpoint, or an
  edited ``config.yaml``) is refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from losskit.errors import ConfigError, LosskitError
from losskit.train.config import TrainConfig, validate_train_config

__all__ = ["RUN_FILES", "RunDirError", "config_hash", "new_run_dir", "prepare_new_run", "read_run_config", "write_run_config"]

#: the files and folders ``losskit train`` writes in a run directory
RUN_FILES = ("config.yaml", "metrics.jsonl", "curves.png", "checkpoints")


class RunDirError(LosskitError):
    """A run directory that a new run may not use, or that cannot be resumed."""


def new_run_dir() -> Path:
    """``runs/train-<timestamp>`` (microseconds: two runs never share one)."""
    return Path("runs") / datetime.now().strftime("train-%Y%m%d-%H%M%S-%f")


def config_hash(config: TrainConfig) -> str:
    """SHA-256 (16 hex digits) of the config without ``run_dir`` (a moved run keeps its hash)."""
    data = config.model_dump(mode="json")
    data.pop("run_dir", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def prepare_new_run(run_dir: Path, *, overwrite: bool, delete: bool) -> None:
    """Refuse a non-empty ``run_dir`` unless ``overwrite``; then (``delete``: on rank 0) remove the run files.

    Raises:
        RunDirError: ``run_dir`` is a file, or holds files and ``overwrite`` is false.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} is a file; choose another --run-dir")
    entries = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    if entries and not overwrite:
        shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
        raise RunDirError(
            f"run directory {run_dir} is not empty ({shown}); continue that run with --resume {run_dir}, "
            "replace it with --overwrite, or choose another --run-dir"
        )
    if overwrite and delete:
        for name in RUN_FILES:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def write_run_config(run_dir: Path, config: TrainConfig) -> None:
    """Create ``run_dir`` with its ``config.yaml`` and an empty ``metrics.jsonl``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    (run_dir / "metrics.jsonl").write_text("")


def read_run_config(run_dir: Path) -> TrainConfig:
    """The config a resume continues with: ``run_dir/config.yaml`` (its ``run_dir`` set to where it is now).

    Raises:
        RunDirError: no such folder or no ``config.yaml`` in it.
        ConfigError: the file does not validate (the message names it).
    """
    path = run_dir / "config.yaml"
    if not path.is_file():
        what = "does not exist" if not run_dir.exists() else "has no config.yaml"
        raise RunDirError(f"cannot resume {run_dir}: it {what}; --resume takes a folder written by losskit train")
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([(str(path), f"cannot read the run's config: {str(exc).splitlines()[0]}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([(str(path), f"expected a mapping, got {type(data).__name__}")])
    try:
        return validate_train_config({**data, "run_dir": str(run_dir)})
    except ConfigError as exc:
        raise ConfigError(exc.errors, title=f"invalid run config {path}:") from None
