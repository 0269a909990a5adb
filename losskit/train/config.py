"""``TrainConfig``: the validated configuration of ``losskit train``.

Loaded from YAML (safe loader) or JSON, then dotted command-line overrides
(``--set optim.lr=3e-4``; values parsed as YAML scalars/lists). Errors are one
:class:`~losskit.errors.ConfigError` with a line per bad field, ``field.path: message``,
under a first line naming the file. The ``loss`` section is validated once, when the
``TrainConfig`` is, by the loss's own config model through the registry (paths
``loss.<field>``); a section without ``name`` is the default loss (``clip``) and
``loss: siglip`` is short for ``loss: {name: siglip}``. ``curriculum`` is validated by
:class:`losskit.Curriculum` when built.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, Field, PrivateAttr, field_validator, model_validator

from losskit.config import config_error
from losskit.errors import ConfigError, LosskitError
from losskit.files import read_mapping
from losskit.registry import get_spec, resolve_config
from losskit.train.overrides import apply_overrides, parse_assignment
from losskit.train.sections import (
    CheckpointConfig,
    DataConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    Section,
    StageConfig,
)

__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "StageConfig",
    "DEFAULT_LOSS",
    "TrainConfig",
    "apply_overrides",
    "load_train_config",
    "parse_assignment",
    "validate_train_config",
]

#: the loss of a config whose ``loss`` section names none
DEFAULT_LOSS = "clip"

class TrainConfig(Section):
    """Everything ``losskit train`` needs; every field has a default (``losskit train`` alone works)."""

    seed: int = Field(0, ge=0, description="Seed of initialisation, data order and augmentation.")
    steps: int = Field(900, ge=1, le=100_000_000, description="Optimiser steps.")
    loss: dict[str, Any] = Field(
        default_factory=lambda: {"name": DEFAULT_LOSS},
        description="The loss spec: {name: <registered loss>, ...its config fields} (see `losskit show NAME`); "
        "without name: clip; a bare name (loss: siglip) is {name: siglip}.",
    )
    curriculum: dict[str, Any] | None = Field(
        None, description="Optional losskit.Curriculum schedules: {dotted.loss.field: {kind: ..., ...}}."
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    stages: list[StageConfig] = Field(default_factory=list, description="Staged fine-tuning; empty: one stage.")
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    log_every: int = Field(50, ge=1, description="Write a metrics.jsonl training line every N steps.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto': CUDA when available, else CPU.")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="'auto': bf16 autocast on CUDA, fp32 on CPU.")
    compile: bool = Field(False, description="torch.compile the model.")
    cpu_threads: int | None = Field(
        1,
        ge=1,
        le=1024,
        description="Intra-op threads (torch.set_num_threads) when training on the CPU; null: torch's default "
        "(one per core). 1 by default: on a CPU shared with other jobs, more threads stall on synchronisation.",
    )
    run_dir: str | None = Field(None, description="Output folder; null: runs/train-<timestamp>.")
    progress: Literal["auto", "bar", "log"] = Field(
        "auto", description="'auto': a tqdm bar on a terminal, plain log lines otherwise."
    )

    # the loss config validated with this TrainConfig, and the loss section it came from
    _loss_config: Any = PrivateAttr(default=None)
    _loss_source: dict[str, Any] | None = PrivateAttr(default=None)

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_spec(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "name" not in value:
            return {"name": DEFAULT_LOSS, **value}
        return value

    @model_validator(mode="after")
    def _validate_loss(self) -> TrainConfig:
        self._resolve_loss()
        return self

    def _resolve_loss(self) -> Any:
        self._loss_config = resolve_config(self.loss, prefix="loss")
        self._loss_source = copy.deepcopy(self.loss)
        return self._loss_config

    def loss_config(self) -> Any:
        """The loss config validated with this TrainConfig (errors name ``loss.<field>``).

        Validated once; only a ``loss`` section changed in place since is validated again.
        """
        if self._loss_config is None or self._loss_source != self.loss:
            return self._resolve_loss()
        return self._loss_config


def _fields_at(path: str, data: dict[str, Any]) -> list[str]:
    """Field names of the section at ``path`` (``""``, ``"optim"``, ``"loss"``); ``[]`` when unknown."""
    if path == "loss":
        spec = TrainConfig._loss_spec(data.get("loss", {}))
        try:
            return list(get_spec(spec["name"]).config_class.model_fields)
        except (LosskitError, KeyError, TypeError):
            return []
    model: Any = TrainConfig
    for part in [p for p in path.split(".") if p]:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        model = field.annotation if field is not None else None
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _with_suggestions(error: ConfigError, data: dict[str, Any]) -> ConfigError:
    """An unknown field gets "did you mean" the closest field of its section (unless it has one)."""
    errors = []
    for path, message in error.errors:
        if message.startswith("Extra inputs are not permitted") and "did you mean" not in message:
            section, _, name = path.rpartition(".")
            close = difflib.get_close_matches(name, _fields_at(section, data), n=1)
            message += f"; did you mean {close[0]!r}?" if close else ""
        errors.append((path, message))
    return ConfigError(errors)


def validate_train_config(data: dict[str, Any]) -> TrainConfig:
    """Validate a plain mapping, the loss section included; one ConfigError for all problems.

    An unknown field (``loss.temprature``, ``optim.lrr``) is reported at its path with
    the closest field name of its section.
    """
    try:
        return TrainConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _with_suggestions(config_error(exc), data) from None


def _check_not_a_loss_file(data: dict[str, Any], path: Path) -> None:
    if "name" in data and "loss" not in data:
        raise ConfigError(
            [(str(path), "this looks like a loss config (a 'name' at the top level); a train config needs a "
              f"`loss:` section, e.g. loss: {{name: {data['name']}}} (or pass it with --set loss={data['name']})")]
        )  # fmt: skip


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read ``path`` (YAML or JSON; ``None``: all defaults), apply ``overrides``, validate.

    An error in a file's config says which file (and whether overrides were applied).
    """
    if path is None:
        return validate_train_config(apply_overrides({}, overrides or []))
    data = read_mapping(path)
    _check_not_a_loss_file(data, Path(path))
    try:
        return validate_train_config(apply_overrides(data, overrides or []))
    except ConfigError as exc:
        where = f"{path} with the command-line overrides" if overrides else str(path)
        raise ConfigError(exc.errors, title=f"invalid train config {where}:") from None
