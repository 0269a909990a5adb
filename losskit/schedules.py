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
  ``end`` non-zero with the same sign), or with ``gamma`` instead of ``end``/``steps``
  ``start * gamma ** t`` (``torch.optim.lr_scheduler.ExponentialLR``), never past
  ``end`` when it is given.
- ``step``: ``values[i]`` where ``i`` is the number of ``milestones`` ``<= t``, or with
  ``start`` and ``gamma`` instead of ``values`` ``start * gamma ** i``
  (``torch.optim.lr_scheduler.MultiStepLR``).
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


class ExponentialSchedule(_Base):
    """Geometric: ``start * (end / start) ** min(t / steps, 1)``, or with ``gamma``
    (``torch.optim.lr_scheduler.ExponentialLR``) ``start * gamma ** t``, never past ``end`` when given."""

    kind: Literal["exponential"] = Field(description="Schedule kind.")
    start: float = Field(description="Value at the schedule's step 0 (non-zero).", **_FINITE)
    end: float | None = Field(
        None, description="Value reached at `steps`; with `gamma`, an optional bound never passed.", **_FINITE
    )
    steps: int | None = Field(None, gt=0, description="Steps (after warm-up) from start to end; not with gamma.")
    gamma: float | None = Field(None, gt=0.0, description="Factor per step (instead of end/steps).", **_FINITE)

    @model_validator(mode="after")
    def _one_form(self) -> ExponentialSchedule:
        if self.gamma is None and (self.end is None or self.steps is None):
            raise ValueError("give either end and steps (geometric from start to end) or gamma (start * gamma ** t)")
        if self.gamma is not None and self.steps is not None:
            raise ValueError("give either steps (with end) or gamma, not both")
        if self.start == 0 or (self.end is not None and (self.end == 0 or (self.start > 0) != (self.end > 0))):
            raise ValueError("start and end must be non-zero and have the same sign for an exponential schedule")
        return self

    def _curve(self, t: int) -> float:
        if self.gamma is None:
            p = min(t / self.steps, 1.0)  # type: ignore[operator]
            return self.end if p == 1.0 else self.start * (self.end / self.start) ** p  # type: ignore[return-value,operator]
        try:
            value = self.start * self.gamma**t
        except OverflowError:
            value = math.copysign(math.inf, self.start)
        if self.end is None:
            return value
        lo, hi = sorted((self.start, self.end))
        return min(max(value, lo), hi)

    def _extremes(self) -> tuple[float, ...]:
        if self.end is not None:
            return (self.start, self.end)
        if self.gamma < 1:  # type: ignore[operator]
            return (self.start, 0.0)
        return (self.start, self.start if self.gamma == 1 else math.copysign(math.inf, self.start))


class StepSchedule(_Base):
    """``values[i]`` — or ``start * gamma ** i`` (``torch.optim.lr_scheduler.MultiStepLR``) —
    where ``i`` is the number of milestones ``<= t``."""

    kind: Literal["step"] = Field(description="Schedule kind.")
    milestones: list[Annotated[int, Field(gt=0)]] = Field(
        min_length=1, description="Strictly increasing steps (after warm-up) at which the next value starts."
    )
    values: list[Annotated[float, Field(**_FINITE)]] | None = Field(
        None, description="Value before the first milestone, then from each milestone on (len(milestones) + 1)."
    )
    start: float | None = Field(None, description="Value before the first milestone (with gamma).", **_FINITE)
    gamma: float | None = Field(None, description="Factor applied at each milestone (with start).", **_FINITE)

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, milestones: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"must be strictly increasing, got {milestones}")
        return milestones

    @model_validator(mode="after")
    def _one_form(self) -> StepSchedule:
        explicit = self.values is not None and self.start is None and self.gamma is None
        multiplicative = self.values is None and self.start is not None and self.gamma is not None
        if not (explicit or multiplicative):
            raise ValueError("give either values, or start and gamma")
        if self.values is not None and len(self.values) != len(self.milestones) + 1:
            raise ValueError(
                f"values must have len(milestones) + 1 = {len(self.milestones) + 1} entries, got {len(self.values)}"
            )
        return self

    def _value(self, i: int) -> float:
        return self.values[i] if self.values is not None else self.start * self.gamma**i  # type: ignore[operator]

    def _curve(self, t: int) -> float:
        return self._value(bisect_right(self.milestones, t))

    def _extremes(self) -> tuple[float, ...]:
        return tuple(self._value(i) for i in range(len(self.milestones) + 1))


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

