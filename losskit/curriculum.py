"""Curriculum: drive numeric config fields of a built loss by schedules of the global step.

::

    loss = losskit.build({"name": "mixture", "terms": {...}, "weights": {"box": 0.0}})
    curriculum = losskit.Curriculum(loss, {
        "weights.box": {"kind": "linear", "start": 0.0, "end": 1.0, "steps": 1000},
        "terms.itc.temperature": {"kind": "cosine", "start": 0.1, "end": 0.02, "steps": 10000},
    })
    for step, batch in enumerate(loader, start=resumed_step):
        curriculum.step(step)            # sets the fields for this step (Python only: no tensor read)
        loss_value = loss(**batch)

A path is dotted through the loss's config: a field (``"gamma"``), a field of a nested
config, or an entry of a mapping field (``"weights.box"``, ``"terms.box.iou_weight"``).
Values go through the config's validated assignment, so the field's bounds hold; every
schedule's extreme values are also checked against them at construction.

A field whose value currently lives in a learnable ``nn.Parameter`` (reported by
:meth:`losskit.Loss.learnable_fields`) cannot be scheduled — setting the config would
not change the loss — unless the loss declares how, by returning a setter for that path
from :meth:`losskit.Loss.curriculum_setters` (default ``{}``; e.g. a setter that resets
the parameter to the scheduled value).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from losskit.config import join_path
from losskit.errors import ConfigError
from losskit.loss import Loss
from losskit.registry import read_mapping
from losskit.schedules import parse_schedule

__all__ = ["Curriculum", "load_schedules", "schedulable_paths"]


def _numeric_type(annotation: Any) -> type | None:
    """``float`` or ``int`` when a field annotated ``annotation`` accepts that number, else None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _numeric_type(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        found = {_numeric_type(arg) for arg in typing.get_args(annotation)}
        return float if float in found else int if int in found else None
    if annotation is float or annotation is int:
        return annotation
    return None


@dataclass(frozen=True)
class _Field:
    """A numeric field: ``owner.<name>``, or the entry ``key`` of the mapping ``owner.<name>``."""

    owner: BaseModel
    name: str
    key: str | None
    number: type

    def assign(self, value: float) -> None:
        value = round(value) if self.number is int else float(value)
        if self.key is None:
            setattr(self.owner, self.name, value)
        else:
            setattr(self.owner, self.name, {**getattr(self.owner, self.name), self.key: value})


def _fields(model: BaseModel, prefix: str = "") -> dict[str, _Field]:
    found: dict[str, _Field] = {}
    for name, info in type(model).model_fields.items():
        path, value = join_path(prefix, name), getattr(model, name)
        number = _numeric_type(info.annotation)
        if number is not None:
            found[path] = _Field(model, name, None, number)
        elif isinstance(value, BaseModel):
            found.update(_fields(value, path))
        elif isinstance(value, Mapping):
            args = typing.get_args(info.annotation)
            entry_number = _numeric_type(args[1]) if len(args) == 2 else None
            for key, entry in value.items():
                if isinstance(entry, BaseModel):
                    found.update(_fields(entry, join_path(path, str(key))))
                elif entry_number is not None:
                    found[join_path(path, str(key))] = _Field(model, name, str(key), entry_number)
    return found


def schedulable_paths(loss: Loss) -> list[str]:
    """Sorted dotted paths of the numeric config fields of ``loss`` that a curriculum can drive."""
    fields = set(_fields(loss.config))
    return sorted((fields - set(loss.learnable_fields())) | (fields & set(loss.curriculum_setters())))


class Curriculum:
    """Schedules bound to numeric config fields of one built loss.

    Args:
        loss: a built :class:`losskit.Loss` (e.g. from :func:`losskit.build`).
        schedules: dotted path -> schedule (a dict with ``kind``, see
            :mod:`losskit.schedules`, or a schedule instance).

    Construction validates everything and applies step 0: an unknown path (the message
    lists the valid ones), a non-numeric field, a learnable field without a declared
    setter, an invalid schedule or one that reaches a value the field's bounds reject
    all raise one :class:`~losskit.errors.ConfigError` with a line per problem.
    """

    def __init__(self, loss: Loss, schedules: Mapping[str, Any]) -> None:
        if not isinstance(loss, Loss):
            raise TypeError(f"loss: expected a losskit.Loss, got {type(loss).__name__}")
        if not isinstance(schedules, Mapping):
            raise TypeError(f"schedules: expected a mapping of dotted path -> schedule, got {type(schedules).__name__}")
        self.loss = loss
        self._setters = dict(loss.curriculum_setters())
        errors: list[tuple[str, str]] = []
        self.schedules: dict[str, Any] = {}
        for path, data in schedules.items():
            try:
                self.schedules[path] = parse_schedule(data, prefix=str(path))
            except ConfigError as exc:
                errors.extend(exc.errors)
        errors.extend(self._check_paths())
        if errors:
            raise ConfigError(errors, title=f"invalid curriculum for {type(loss).__name__}:")
        self.last_step: int | None = None
        self.step(0)

    def _check_paths(self) -> list[tuple[str, str]]:
        fields = _fields(self.loss.config)
        learnable = self.loss.learnable_fields()
        valid = ", ".join(schedulable_paths(self.loss)) or "(none)"
        errors = []
        for path, schedule in self.schedules.items():
            if path not in fields:
                errors.append((path, f"not a numeric config field of this loss; valid paths: {valid}"))
            elif path in learnable and path not in self._setters:
                errors.append((
                    path,
                    f"is currently the learnable parameter {learnable[path]!r}; setting the config would not "
                    "change the loss. Make it fixed in the config, or use a loss that declares a setter for it "
                    "in curriculum_setters()",
                ))
            else:
                errors.extend(self._check_bounds(path, schedule))
        return errors

    def _check_bounds(self, path: str, schedule: Any) -> list[tuple[str, str]]:
        """The field's own bounds against the schedule's extremes. Rules across fields (errors
        without a field path) depend on the other values at that step: :meth:`step` checks them."""
        for value in schedule.extremes():
            probe = self.loss.config.model_copy(deep=True)
            try:
                _fields(probe)[path].assign(value)
            except ConfigError as exc:
                reasons = [msg for where, msg in exc.errors if where]
                if reasons:
                    return [(path, f"the schedule reaches {value!r}, which the field rejects: {'; '.join(reasons)}")]
        return []

    def values(self, step: int) -> dict[str, float]:
        """The value of every scheduled path at ``step``, without setting anything."""
        return {path: schedule.at(step) for path, schedule in self.schedules.items()}

    def step(self, step: int | None = None) -> dict[str, float]:
        """Set every scheduled field to its value at global step ``step``.

        Args:
            step: the global optimisation step (``>= 0``); ``None`` means the step after
                the last one set (construction sets step 0).

        Returns:
            path -> value set.

        Raises:
            TypeError: ``step`` is a tensor. The schedules are Python arithmetic; reading a
                CUDA step counter back would make every call wait for the GPU, so pass the
                Python int your loop already has.
        """
        if isinstance(step, torch.Tensor):
            raise TypeError(
                f"step: expected a Python int (the global step), got a tensor on {step.device}; pass the loop's "
                "int counter (reading a device tensor back would synchronise with the GPU)"
            )
        if step is None:
            step = 0 if self.last_step is None else self.last_step + 1
        values = self.values(step)
        self._apply(values, step)
        self.last_step = step
        return values

    def _apply(self, values: dict[str, float], step: int) -> None:
        """Set every value; one rejected by a cross-field rule of the config (e.g. "not every term
        off") is retried after the others, so the order of the paths does not matter."""
        fields = _fields(self.loss.config)
        pending = dict(values)
        while pending:
            failed: dict[str, ConfigError] = {}
            for path, value in pending.items():
                try:
                    if path in self._setters:
                        self._setters[path](value)
                    else:
                        fields[path].assign(value)
                except ConfigError as exc:
                    failed[path] = exc
            if len(failed) == len(pending):
                raise ConfigError([
                    (path, f"at step {step} the value {pending[path]!r} is rejected: " + "; ".join(m for _, m in exc.errors))
                    for path, exc in failed.items()
                ])
            pending = {path: pending[path] for path in failed}

    def state_dict(self) -> dict[str, Any]:
        """``{"last_step": int, "schedules": {path: schedule dict}}``, for checkpoints."""
        return {
            "last_step": self.last_step,
            "schedules": {path: s.model_dump(mode="json") for path, s in self.schedules.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the step and set the fields to their values at that step.

        The schedules come from the constructor (the code or YAML is the source of
        truth); the saved paths must match the constructed ones.
        """
        saved = set(state.get("schedules", {}))
        if saved != set(self.schedules):
            raise ValueError(
                f"state_dict: scheduled paths {sorted(saved)} do not match this curriculum's {sorted(self.schedules)}"
            )
        step = state.get("last_step")
        if step is not None:
            self.step(int(step))

    @classmethod
    def from_file(cls, loss: Loss, path: str | Path, *, key: str = "curriculum") -> Curriculum:
        """Build from the ``key`` mapping of a YAML/JSON file (see :func:`load_schedules`)."""
        return cls(loss, load_schedules(path, key=key))

    def __repr__(self) -> str:
        return f"Curriculum({type(self.loss).__name__}, paths={list(self.schedules)}, last_step={self.last_step})"


def load_schedules(path: str | Path, *, key: str = "curriculum") -> dict[str, Any]:
    """Read the schedules under ``key`` of a YAML/JSON file (the loss may sit under ``loss:``).

    ::

        loss:
          name: mixture
          ...
        curriculum:
          weights.box: {kind: linear, start: 0.0, end: 1.0, steps: 1000}

    Returns:
        dotted path -> validated schedule.

    Raises:
        ConfigError: unreadable file, missing ``key``, or an invalid schedule
            (paths like ``curriculum.weights.box.steps``).
    """
    data = read_mapping(path)
    if key not in data:
        raise ConfigError([(key, f"Field required in {path}")])
    section = data[key]
    if not isinstance(section, Mapping):
        raise ConfigError([(key, f"expected a mapping of dotted path -> schedule, got {type(section).__name__}")])
    schedules, errors = {}, []
    for field_path, spec in section.items():
        try:
            schedules[str(field_path)] = parse_schedule(spec, prefix=f"{key}.{field_path}")
        except ConfigError as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigError(errors)
    return schedules
