"""Schedules for :class:`losskit.Curriculum`: validated configs that map a global step to a value.

Every schedule is a pydantic model discriminated by ``kind`` and written the same way in
Python and in YAML::

    {"kind": "linear", "start": 0.0, "end": 1.0, "steps": 1000}
    {"kind": "cosine", "start": 0.07, "end": 0.01, "steps": 10000, "warmup_steps": 500}

Kinds (``t`` is the step after the warm-up, ``p = min(t / steps, 1)``):

- ``constant``: ``value``.
- ``linear``: ``start + (end - start) * p``.
- ``cosine``: ``end + (start - end) * (1 + cos(pi * p)) / 2`` (cosine annealing, as
  ``torch.optim.lr_scheduler.CosineAnnealingLR`` over one half period).
- ``exponential``: ``start * (end / start) ** p`` (geometric interpolation; ``start`` and
  ``end`` non-zero with the same sign).
- ``step``: ``values[i]`` where ``i`` is the number of ``milestones`` ``<= t``
  (``torch.optim.lr_scheduler.MultiStepLR`` with explicit values).
- ``piecewise``: linear interpolation between ``points`` ``[[step, value], ...]``,
  constant before the first and after the last.

Warm-up (every kind): with ``warmup_steps = W > 0``, steps ``0 <= n < W`` ramp linearly
from ``warmup_start`` to the schedule's first value; from step ``W`` on the schedule runs
with ``t = n - W``. Steps are global optimisation steps (integers ``>= 0``).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Annotated, Any, Literal, Union

import pydantic
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from losskit.config import config_error, join_path
from losskit.errors import ConfigError

__all__ = [
    "ConstantSchedule",
    "CosineSchedule",
    "ExponentialSchedule",
    "LinearSchedule",
    "PiecewiseSchedule",
    "Schedule",
    "StepSchedule",
    "parse_schedule",
]

_FINITE = {"allow_inf_nan": False}


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup_steps: int = Field(0, ge=0, description="Steps of linear warm-up from warmup_start before the schedule starts.")
    warmup_start: float = Field(0.0, description="Value at step 0 when warmup_steps > 0.", **_FINITE)

    def at(self, step: int) -> float:
        """The value at global step ``step`` (``>= 0``), warm-up included."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step: expected an integer >= 0, got {step!r}")
        if step < self.warmup_steps:
            return self.warmup_start + (self._curve(0) - self.warmup_start) * step / self.warmup_steps
        return self._curve(step - self.warmup_steps)

    def extremes(self) -> tuple[float, ...]:
        """Values that bracket every value the schedule takes (its min and max are among them)."""
        own = self._extremes()
        return (*own, self.warmup_start) if self.warmup_steps else own

    def _curve(self, t: int) -> float:
        raise NotImplementedError

    def _extremes(self) -> tuple[float, ...]:
        raise NotImplementedError


class ConstantSchedule(_Base):
    """``value`` at every step (after the optional warm-up)."""

    kind: Literal["constant"] = Field(description="Schedule kind.")
    value: float = Field(description="The value.", **_FINITE)

    def _curve(self, t: int) -> float:
        return self.value

    def _extremes(self) -> tuple[float, ...]:
        return (self.value,)


class _Interpolated(_Base):
    start: float = Field(description="Value at the schedule's step 0.", **_FINITE)
    end: float = Field(description="Value from `steps` on.", **_FINITE)
    steps: int = Field(gt=0, description="Steps (after warm-up) to go from start to end.")

    def _progress(self, t: int) -> float:
        return min(t / self.steps, 1.0)

    def _extremes(self) -> tuple[float, ...]:
        return (self.start, self.end)


class LinearSchedule(_Interpolated):
    """``start + (end - start) * min(t / steps, 1)``."""

    kind: Literal["linear"] = Field(description="Schedule kind.")

    def _curve(self, t: int) -> float:
        return self.start + (self.end - self.start) * self._progress(t)


class CosineSchedule(_Interpolated):
    """``end + (start - end) * (1 + cos(pi * min(t / steps, 1))) / 2``."""

    kind: Literal["cosine"] = Field(description="Schedule kind.")

    def _curve(self, t: int) -> float:
        return self.end + (self.start - self.end) * (1.0 + math.cos(math.pi * self._progress(t))) / 2.0


class ExponentialSchedule(_Interpolated):
    """``start * (end / start) ** min(t / steps, 1)``: geometric from start to end."""

    kind: Literal["exponential"] = Field(description="Schedule kind.")

    @model_validator(mode="after")
    def _same_sign(self) -> ExponentialSchedule:
        if self.start == 0 or self.end == 0 or (self.start > 0) != (self.end > 0):
            raise ValueError("start and end must be non-zero and have the same sign for an exponential schedule")
        return self

    def _curve(self, t: int) -> float:
        p = self._progress(t)
        return self.end if p == 1.0 else self.start * (self.end / self.start) ** p


class StepSchedule(_Base):
    """``values[i]``, ``i`` = number of milestones ``<= t`` (``len(values) == len(milestones) + 1``)."""

    kind: Literal["step"] = Field(description="Schedule kind.")
    milestones: list[Annotated[int, Field(gt=0)]] = Field(
        min_length=1, description="Strictly increasing steps (after warm-up) at which the next value starts."
    )
    values: list[Annotated[float, Field(**_FINITE)]] = Field(
        description="Value before the first milestone, then the value from each milestone on."
    )

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, milestones: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"must be strictly increasing, got {milestones}")
        return milestones

    @model_validator(mode="after")
    def _lengths(self) -> StepSchedule:
        if len(self.values) != len(self.milestones) + 1:
            raise ValueError(
                f"values must have len(milestones) + 1 = {len(self.milestones) + 1} entries, got {len(self.values)}"
            )
        return self

    def _curve(self, t: int) -> float:
        return self.values[bisect_right(self.milestones, t)]

    def _extremes(self) -> tuple[float, ...]:
        return tuple(self.values)


class PiecewiseSchedule(_Base):
    """Linear between ``points`` ``[[step, value], ...]``; constant outside them."""

    kind: Literal["piecewise"] = Field(description="Schedule kind.")
    points: list[tuple[Annotated[int, Field(ge=0)], Annotated[float, Field(**_FINITE)]]] = Field(
        min_length=1, description="[step, value] pairs with strictly increasing steps (after warm-up)."
    )

    @field_validator("points")
    @classmethod
    def _increasing(cls, points: list[tuple[int, float]]) -> list[tuple[int, float]]:
        steps = [s for s, _ in points]
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"steps must be strictly increasing, got {steps}")
        return points

    def _curve(self, t: int) -> float:
        steps = [s for s, _ in self.points]
        i = bisect_right(steps, t)
        if i == 0:
            return self.points[0][1]
        if i == len(self.points):
            return self.points[-1][1]
        (s0, v0), (s1, v1) = self.points[i - 1], self.points[i]
        return v0 + (v1 - v0) * (t - s0) / (s1 - s0)

    def _extremes(self) -> tuple[float, ...]:
        return tuple(v for _, v in self.points)


#: Any schedule, discriminated by ``kind`` (use as a pydantic field type).
Schedule = Annotated[
    Union[ConstantSchedule, LinearSchedule, CosineSchedule, ExponentialSchedule, StepSchedule, PiecewiseSchedule],
    Field(discriminator="kind"),
]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(Schedule)


def parse_schedule(data: Any, *, prefix: str = "") -> Any:
    """Validate a schedule given as a dict (or return a schedule instance unchanged).

    Raises:
        ConfigError: one line per bad field, under ``prefix`` (e.g. ``"weights.box.steps"``).
    """
    if isinstance(data, _Base):
        return data
    try:
        return _ADAPTER.validate_python(data)
    except pydantic.ValidationError as exc:
        error = config_error(exc)
    kind = data.get("kind") if isinstance(data, dict) else None
    raise ConfigError([(join_path(prefix, _untagged(path, kind)), msg) for path, msg in error.errors])


def _untagged(path: str, kind: object) -> str:
    """Drop the union tag pydantic puts first in each error path (``"linear.steps"``)."""
    if not isinstance(kind, str):
        return path
    return "" if path == kind else path.removeprefix(kind + ".")

