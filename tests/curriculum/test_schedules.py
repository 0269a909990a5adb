"""Schedules: values at their boundaries against hand computation, warm-up, validation, ranges."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from losskit.errors import ConfigError
from losskit.schedules import parse_schedule


def at(spec: dict, *steps: int) -> list[float]:
    schedule = parse_schedule(spec)
    return [schedule.at(s) for s in steps]


def test_constant():
    assert at({"kind": "constant", "value": 0.3}, 0, 1, 10**9) == [0.3, 0.3, 0.3]


def test_linear_matches_design_formula():
    # start + (end - start) * min(step / steps, 1)
    assert at({"kind": "linear", "start": 1.0, "end": 3.0, "steps": 4}, 0, 1, 2, 4, 5, 1000) == [1.0, 1.5, 2.0, 3.0, 3.0, 3.0]


def test_cosine_endpoints_and_midpoint():
    values = at({"kind": "cosine", "start": 0.1, "end": 0.02, "steps": 10}, 0, 5, 10, 11, 2)
    assert values[0] == pytest.approx(0.1)
    assert values[1] == pytest.approx(0.06)  # half way: the mean of start and end
    assert values[2] == pytest.approx(0.02)
    assert values[3] == pytest.approx(0.02)
    assert values[4] == pytest.approx(0.02 + 0.08 * (1 + math.cos(math.pi * 0.2)) / 2)


def test_exponential_is_geometric():
    values = at({"kind": "exponential", "start": 1.0, "end": 0.01, "steps": 10}, 0, 5, 10, 20)
    assert values == pytest.approx([1.0, 0.1, 0.01, 0.01])


def test_torch_style_forms_match_torch_lr_schedulers():
    """step with start/gamma is MultiStepLR, exponential with gamma is ExponentialLR."""
    param = torch.nn.Parameter(torch.zeros(1))
    multi = torch.optim.lr_scheduler.MultiStepLR(torch.optim.SGD([param], lr=0.3), milestones=[3, 7], gamma=0.2)
    expo = torch.optim.lr_scheduler.ExponentialLR(torch.optim.SGD([param], lr=0.3), gamma=0.9)
    step = parse_schedule({"kind": "step", "milestones": [3, 7], "start": 0.3, "gamma": 0.2})
    exponential = parse_schedule({"kind": "exponential", "start": 0.3, "gamma": 0.9})
    for t in range(12):
        assert step.at(t) == pytest.approx(multi.get_last_lr()[0])
        assert exponential.at(t) == pytest.approx(expo.get_last_lr()[0])
        multi.optimizer.step()
        expo.optimizer.step()
        multi.step()
        expo.step()


def test_exponential_gamma_never_passes_end():
    schedule = parse_schedule({"kind": "exponential", "start": 1.0, "gamma": 2.0, "end": 5.0})
    assert [schedule.at(t) for t in (0, 1, 2, 3, 10**6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert parse_schedule({"kind": "exponential", "start": 1.0, "gamma": 3.0}).at(10**6) == math.inf


def test_step_milestones():
    spec = {"kind": "step", "milestones": [3, 7], "values": [1.0, 0.5, 0.1]}
    assert at(spec, 0, 2, 3, 6, 7, 100) == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]


def test_piecewise_interpolates_and_holds_ends():
    spec = {"kind": "piecewise", "points": [[2, 1.0], [6, 3.0], [8, 0.0]]}
    assert at(spec, 0, 2, 4, 6, 7, 8, 50) == [1.0, 1.0, 2.0, 3.0, 1.5, 0.0, 0.0]


def test_warmup_ramps_to_first_value_then_shifts_the_schedule():
    spec = {"kind": "linear", "start": 1.0, "end": 0.0, "steps": 10, "warmup_steps": 4, "warmup_start": 0.2}
    assert at(spec, 0, 2, 4, 9, 14, 20) == pytest.approx([0.2, 0.6, 1.0, 0.5, 0.0, 0.0])
    stepped = {"kind": "step", "milestones": [2], "values": [5.0, 7.0], "warmup_steps": 2}
    assert at(stepped, 0, 1, 2, 3, 4) == [0.0, 2.5, 5.0, 5.0, 7.0]


WARMUP_CASES = {
    # kind: (spec, {step: value by hand}); the warm-up goes linearly from warmup_start to the
    # schedule's value at t = 0, then the schedule runs with t = step - warmup_steps
    "constant": (
        {"kind": "constant", "value": 3.0, "warmup_steps": 4, "warmup_start": 1.0},
        {0: 1.0, 2: 2.0, 3: 2.5, 4: 3.0, 10**6: 3.0},
    ),
    "linear": (
        {"kind": "linear", "start": 1.0, "end": 3.0, "steps": 4, "warmup_steps": 4},
        {0: 0.0, 2: 0.5, 3: 0.75, 4: 1.0, 6: 2.0, 7: 2.5, 8: 3.0, 9: 3.0},
    ),
    "cosine": (
        {"kind": "cosine", "start": 2.0, "end": 0.0, "steps": 10, "warmup_steps": 5, "warmup_start": -1.0},
        {0: -1.0, 1: -0.4, 4: 1.4, 5: 2.0, 7: 1.0 + math.cos(0.2 * math.pi), 10: 1.0, 14: 1.0 + math.cos(0.9 * math.pi),
         15: 0.0, 16: 0.0},
    ),
    "exponential end/steps": (
        {"kind": "exponential", "start": 8.0, "end": 0.5, "steps": 4, "warmup_steps": 2},
        {0: 0.0, 1: 4.0, 2: 8.0, 3: 4.0, 4: 2.0, 5: 1.0, 6: 0.5, 7: 0.5},
    ),
    "exponential gamma": (
        {"kind": "exponential", "start": 1.0, "gamma": 3.0, "end": 20.0, "warmup_steps": 2, "warmup_start": 0.5},
        {0: 0.5, 1: 0.75, 2: 1.0, 3: 3.0, 4: 9.0, 5: 20.0, 100: 20.0},
    ),
    "step values": (
        {"kind": "step", "milestones": [2, 5], "values": [4.0, 2.0, 1.0], "warmup_steps": 3, "warmup_start": 1.0},
        {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0, 4: 4.0, 5: 2.0, 7: 2.0, 8: 1.0, 50: 1.0},
    ),
    "step gamma": (
        {"kind": "step", "milestones": [2, 5], "start": 4.0, "gamma": 0.5, "warmup_steps": 3, "warmup_start": 1.0},
        {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0, 4: 4.0, 5: 2.0, 7: 2.0, 8: 1.0, 50: 1.0},
    ),
    "piecewise": (
        {"kind": "piecewise", "points": [[1, 2.0], [3, 6.0]], "warmup_steps": 2},
        {0: 0.0, 1: 1.0, 2: 2.0, 3: 2.0, 4: 4.0, 5: 6.0, 9: 6.0},
    ),
}


@pytest.mark.parametrize("case", list(WARMUP_CASES))
def test_every_kind_with_warmup_at_its_boundaries(case):
    spec, want = WARMUP_CASES[case]
    assert at(spec, *want) == pytest.approx(list(want.values()), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"kind": "linear", "start": 0.0, "end": 1.0, "steps": 0}, "steps"),
        ({"kind": "linear", "start": 0.0, "end": 1.0}, "steps"),
        ({"kind": "cosine", "start": float("nan"), "end": 1.0, "steps": 3}, "start"),
        ({"kind": "step", "milestones": [5, 5], "values": [1.0, 2.0, 3.0]}, "milestones"),
        ({"kind": "step", "milestones": [5], "values": [1.0]}, ""),
        ({"kind": "piecewise", "points": [[3, 1.0], [1, 2.0]]}, "points"),
        ({"kind": "exponential", "start": 1.0, "end": 0.0, "steps": 3}, ""),
        ({"kind": "exponential", "start": 1.0, "end": 2.0}, ""),
        ({"kind": "exponential", "start": 1.0, "gamma": 0.5, "steps": 3}, ""),
        ({"kind": "exponential", "start": 1.0, "gamma": -0.5}, "gamma"),
        ({"kind": "step", "milestones": [5], "start": 1.0}, ""),
        ({"kind": "step", "milestones": [5], "values": [1.0, 2.0], "gamma": 0.1}, ""),
        ({"kind": "constant", "value": 1.0, "warmup_steps": -1}, "warmup_steps"),
        ({"kind": "constant", "value": 1.0, "typo": 1}, "typo"),
        ({"kind": "sawtooth"}, ""),
    ],
)
def test_invalid_schedules_name_the_field(spec, path):
    with pytest.raises(ConfigError) as info:
        parse_schedule(spec, prefix="weights.box")
    assert info.value.errors[0][0] == ".".join(p for p in ("weights.box", path) if p)


def test_negative_or_fractional_step_is_rejected():
    schedule = parse_schedule({"kind": "constant", "value": 1.0})
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="step"):
            schedule.at(bad)


def test_json_round_trip():
    spec = {"kind": "piecewise", "points": [[0, 1.0], [10, 2.0]], "warmup_steps": 3, "warmup_start": 0.5}
    schedule = parse_schedule(spec)
    again = parse_schedule(schedule.model_dump(mode="json"))
    assert again == schedule
    assert [again.at(s) for s in range(15)] == [schedule.at(s) for s in range(15)]


finite = st.floats(-1e3, 1e3, allow_nan=False)
positive = st.floats(1e-3, 1e3)


@st.composite
def schedules(draw):
    kind = draw(st.sampled_from(["constant", "linear", "cosine", "exponential", "step", "piecewise"]))
    spec: dict = {"kind": kind, "warmup_steps": draw(st.integers(0, 20)), "warmup_start": draw(finite)}
    if kind == "constant":
        spec["value"] = draw(finite)
    elif kind in ("linear", "cosine"):
        spec.update(start=draw(finite), end=draw(finite), steps=draw(st.integers(1, 50)))
    elif kind == "exponential":
        sign = draw(st.sampled_from([-1.0, 1.0]))
        spec.update(start=sign * draw(positive), end=sign * draw(positive))
        if draw(st.booleans()):
            spec["steps"] = draw(st.integers(1, 50))
        else:
            spec["gamma"] = draw(st.floats(0.5, 2.0))
    elif kind == "step":
        milestones = sorted(draw(st.sets(st.integers(1, 60), min_size=1, max_size=4)))
        spec["milestones"] = milestones
        if draw(st.booleans()):
            spec["values"] = [draw(finite) for _ in range(len(milestones) + 1)]
        else:
            spec.update(start=draw(finite), gamma=draw(st.floats(-2.0, 2.0)))
    else:
        steps = sorted(draw(st.sets(st.integers(0, 60), min_size=1, max_size=5)))
        spec["points"] = [[s, draw(finite)] for s in steps]
    return parse_schedule(spec)


@given(schedules(), st.integers(0, 200))
def test_values_stay_within_the_reported_extremes(schedule, step):
    """What Curriculum checks against a field's bounds really brackets every value."""
    lo, hi = min(schedule.extremes()), max(schedule.extremes())
    value = schedule.at(step)
    assert lo - 1e-9 * max(1.0, abs(lo)) <= value <= hi + 1e-9 * max(1.0, abs(hi))


@given(schedules())
def test_warmup_is_continuous_at_its_end(schedule):
    w = schedule.warmup_steps
    if w:
        assert schedule.at(w - 1) == pytest.approx(schedule.at(w) + (schedule.warmup_start - schedule.at(w)) / w)
