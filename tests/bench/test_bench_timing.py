"""time_callable / make_step: structure of the measurement, never its speed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from losskit.bench import make_step, time_callable
from losskit.bench.timing import timing_from_times


def test_calls_are_warmup_plus_calibration_plus_repeat_times_number():
    calls = []
    t = time_callable(lambda: calls.append(1), repeat=4, warmup=3, min_run_time=0.001)
    timed = 3 + 1 + 4 * t.number
    # torch.utils.benchmark.Timer.timeit adds max(number // 100, 2) untimed calls per measurement
    assert timed <= len(calls) <= timed + 5 * (2 + t.number // 100)
    assert len(t.times_s) == 4 and t.warmup == 3 and t.number >= 1
    summary = timing_from_times(t.times_s, number=t.number, warmup=t.warmup)  # the statistics of these very times
    assert (t.median_s, t.iqr_s) == (summary.median_s, summary.iqr_s)


def test_timing_from_times_is_median_and_interquartile_range():
    t = timing_from_times([5.0, 1.0, 3.0, 2.0, 4.0], number=2, warmup=0)
    assert t.median_s == 3.0
    assert t.iqr_s == pytest.approx(np.percentile([1, 2, 3, 4, 5], 75) - np.percentile([1, 2, 3, 4, 5], 25))
    assert t.times_s == [5.0, 1.0, 3.0, 2.0, 4.0]


def test_backward_without_wrt_accumulates_into_grad():
    x = torch.ones(3, requires_grad=True)
    t = time_callable(lambda: (2 * x).sum(), backward=True, repeat=1, warmup=1, min_run_time=0.0)
    calls = x.grad[0].item() / 2  # each call adds d(2x)/dx = 2
    assert torch.equal(x.grad, torch.full((3,), x.grad[0].item()))
    assert calls == int(calls) and calls >= 1 + 1 + t.number  # warm-up, calibration, one measurement


def test_make_step_with_wrt_returns_gradients_and_leaves_grad_alone():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    step = make_step(lambda a, *, p: (a**p).sum(), (x,), {"p": 3}, backward=True, wrt=[x])
    (g,) = step()
    assert torch.allclose(g, 3 * x.detach() ** 2)
    assert x.grad is None


def test_make_step_seeds_non_scalar_outputs_with_ones():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (g,) = make_step(lambda a: a * a, (x,), backward=True, wrt=[x])()  # reduction="none"-like
    assert torch.allclose(g, 2 * x.detach())


def test_forward_only_step_returns_the_output():
    assert make_step(lambda a: a + 1, (torch.zeros(2),), backward=False)().tolist() == [1.0, 1.0]


def test_timed_calls_use_the_callers_thread_count_unless_told():
    seen = []
    time_callable(lambda: seen.append(torch.get_num_threads()), repeat=1, warmup=0, min_run_time=0.0)
    assert set(seen) == {torch.get_num_threads()}  # torch.utils.benchmark.Timer alone would use 1
    seen.clear()
    time_callable(lambda: seen.append(torch.get_num_threads()), repeat=1, warmup=0, min_run_time=0.0, num_threads=1)
    assert seen[-1] == 1


@pytest.mark.parametrize("kw, msg", [({"repeat": 0}, "repeat"), ({"warmup": -1}, "warmup")])
def test_bad_arguments_name_themselves(kw, msg):
    with pytest.raises(ValueError, match=msg):
        time_callable(lambda: None, **kw)
