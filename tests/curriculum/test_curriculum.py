"""losskit.Curriculum on real losses: the example focal plugin and a temporary plugin."""

from __future__ import annotations

import math

import pytest
import torch

import losskit
from losskit.curriculum import Curriculum, load_schedules, schedulable_paths
from losskit.errors import ConfigError

LINEAR = {"kind": "linear", "start": 0.0, "end": 2.0, "steps": 10}


def focal_inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, generator=g), (torch.rand(6, 3, generator=g) < 0.4).float()


def test_step_sets_the_field_and_the_loss_follows():
    focal = losskit.build("focal")
    curriculum = Curriculum(focal, {"gamma": LINEAR})
    assert focal.config.gamma == 0.0  # construction applies step 0
    x, y = focal_inputs()
    for step in (3, 10, 25):
        assert curriculum.step(step) == {"gamma": pytest.approx(min(step / 10, 1.0) * 2.0)}
        want = losskit.build("focal", gamma=min(step / 10, 1.0) * 2.0)(x, y)
        assert torch.equal(focal(x, y), want)
    assert curriculum.last_step == 25


def test_step_without_argument_advances_by_one():
    focal = losskit.build("focal")
    curriculum = Curriculum(focal, {"gamma": LINEAR})
    assert [curriculum.step()["gamma"] for _ in range(3)] == pytest.approx([0.2, 0.4, 0.6])


def test_values_preview_does_not_set():
    focal = losskit.build("focal")
    curriculum = Curriculum(focal, {"gamma": LINEAR, "alpha": {"kind": "constant", "value": 0.5}})
    assert curriculum.values(5) == {"gamma": 1.0, "alpha": 0.5}
    assert focal.config.gamma == 0.0


def test_unknown_path_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        Curriculum(losskit.build("focal"), {"gama": LINEAR, "reduction": LINEAR})
    paths = [p for p, _ in info.value.errors]
    assert paths == ["gama", "reduction"]
    assert "valid paths: alpha, gamma" in str(info.value)


def test_schedule_outside_the_field_bounds_is_rejected_at_construction():
    focal = losskit.build("focal")
    with pytest.raises(ConfigError) as info:
        Curriculum(focal, {"gamma": {"kind": "linear", "start": 1.0, "end": 11.0, "steps": 5}})
    assert info.value.errors[0][0] == "gamma"
    assert "11.0" in str(info.value) and "less than or equal to 10" in str(info.value)
    # a warm-up start counts too
    with pytest.raises(ConfigError, match="-1.0"):
        Curriculum(focal, {"alpha": {"kind": "constant", "value": 0.5, "warmup_steps": 3, "warmup_start": -1.0}})
    assert focal.config.gamma == 2.0 and focal.config.alpha == 0.25  # nothing was set


def test_invalid_schedule_reports_its_path():
    with pytest.raises(ConfigError) as info:
        Curriculum(losskit.build("focal"), {"gamma": {"kind": "linear", "start": 0.0, "end": 1.0, "steps": -3}})
    assert info.value.errors == [("gamma.steps", "Input should be greater than 0")]


def test_bad_arguments():
    with pytest.raises(TypeError, match="loss"):
        Curriculum(torch.nn.MSELoss(), {"gamma": LINEAR})
    with pytest.raises(TypeError, match="schedules"):
        Curriculum(losskit.build("focal"), [("gamma", LINEAR)])


def test_int_fields_get_rounded_values(scaled_plugin):
    loss = losskit.build("scaled")
    curriculum = Curriculum(loss, {"power": {"kind": "linear", "start": 1.0, "end": 4.0, "steps": 6}})
    seen = [curriculum.step(s) and loss.config.power for s in range(7)]
    assert seen == [1, 2, 2, 2, 3, 4, 4]  # round(1 + 3 s / 6), Python's round-half-even
    assert all(isinstance(p, int) for p in seen)


def test_learnable_field_is_refused(scaled_plugin):
    loss = losskit.build("scaled", learn_temperature=True)
    assert "temperature" not in schedulable_paths(loss)
    with pytest.raises(ConfigError, match="learnable parameter 'log_temperature'"):
        Curriculum(loss, {"temperature": {"kind": "constant", "value": 1.0}})
    fixed = losskit.build("scaled")
    Curriculum(fixed, {"temperature": {"kind": "constant", "value": 1.0}})
    assert fixed.config.temperature == 1.0


def test_learnable_field_with_a_declared_setter(scaled_plugin):
    loss = losskit.build("scaled", learn_temperature=True, resettable=True)
    assert "temperature" in schedulable_paths(loss)
    curriculum = Curriculum(loss, {"temperature": {"kind": "linear", "start": 1.0, "end": 2.0, "steps": 4}})
    curriculum.step(2)
    assert loss.log_temperature.item() == pytest.approx(math.log(1.5))
    x = torch.tensor([3.0])
    assert loss(x).item() == pytest.approx(4.0)
    # bounds of the field still hold for declared setters
    with pytest.raises(ConfigError, match="temperature"):
        Curriculum(loss, {"temperature": {"kind": "constant", "value": 20.0}})


def test_state_dict_round_trip_continues_exactly():
    spec = {"gamma": {"kind": "cosine", "start": 3.0, "end": 0.5, "steps": 40, "warmup_steps": 5}}
    first = Curriculum(losskit.build("focal"), spec)
    for step in range(17):
        first.step(step)
    state = first.state_dict()
    loss = losskit.build("focal")
    second = Curriculum(loss, spec)
    second.load_state_dict(state)
    assert second.last_step == 16 and loss.config.gamma == first.loss.config.gamma
    for step in range(17, 60):
        assert second.step(step) == first.step(step)
    with pytest.raises(ValueError, match="do not match"):
        Curriculum(losskit.build("focal"), {"alpha": {"kind": "constant", "value": 0.5}}).load_state_dict(state)


def test_load_schedules_from_the_loss_yaml(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(
        "loss:\n  name: focal\n  gamma: 1.0\n"
        "curriculum:\n  gamma: {kind: piecewise, points: [[0, 0.0], [10, 2.0]]}\n"
        "  alpha: {kind: step, milestones: [5], values: [0.25, 0.5]}\n"
    )
    loss = losskit.build(losskit.load_config(path, key="loss"))
    curriculum = Curriculum.from_file(loss, path)
    assert set(load_schedules(path)) == {"gamma", "alpha"}
    curriculum.step(5)
    assert (loss.config.gamma, loss.config.alpha) == (1.0, 0.5)


def test_load_schedules_errors_carry_the_file_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("curriculum:\n  gamma: {kind: linear, start: 0, end: 1, steps: 0}\n")
    with pytest.raises(ConfigError) as info:
        load_schedules(path)
    assert info.value.errors[0][0] == "curriculum.gamma.steps"
    with pytest.raises(ConfigError, match="schedule"):
        load_schedules(path, key="schedule")
    path.write_text("curriculum: [1, 2]\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_schedules(path)


def test_values_that_only_work_together_are_set_in_any_order():
    """bbox rejects a config with every term off; swapping the two terms at one step must work."""
    loss = losskit.build("bbox", iou_weight=1.0, l1_weight=0.0)
    swap = {
        "iou_weight": {"kind": "step", "milestones": [3], "values": [1.0, 0.0]},
        "l1_weight": {"kind": "step", "milestones": [3], "values": [0.0, 1.0]},
    }
    curriculum = Curriculum(loss, swap)
    curriculum.step(3)
    assert (loss.config.iou_weight, loss.config.l1_weight) == (0.0, 1.0)
    curriculum.step(0)
    assert (loss.config.iou_weight, loss.config.l1_weight) == (1.0, 0.0)


def test_a_combination_the_config_rejects_names_the_step():
    loss = losskit.build("bbox")
    off = {"kind": "piecewise", "points": [[0, 1.0], [10, 0.0]]}
    curriculum = Curriculum(loss, {"iou_weight": off, "l1_weight": off})
    with pytest.raises(ConfigError, match="at step 10 the value 0.0 is rejected: .*every term is off"):
        curriculum.step(10)


def test_the_base_loss_declares_no_setters():
    """losskit.Loss.curriculum_setters() defaults to {}: a loss that does not override it (focal, from the
    example plugin) and a mixture of such terms expose nothing beyond their plain fields."""
    focal = losskit.build("focal")
    assert type(focal).curriculum_setters is losskit.Loss.curriculum_setters
    assert focal.curriculum_setters() == {}
    mixture = losskit.build({"name": "mixture", "terms": {"a": {"name": "focal"}, "b": {"name": "bbox"}}})
    assert mixture.curriculum_setters() == {}
    assert schedulable_paths(focal) == ["alpha", "gamma"]


def test_mixture_paths_are_checked_at_construction_and_the_message_lists_the_valid_ones():
    mixture = losskit.build({"name": "mixture", "terms": {"cls": {"name": "focal"}, "box": {"name": "bbox"}}})
    before = losskit.config_to_dict(mixture.config)
    with pytest.raises(ConfigError) as info:
        Curriculum(mixture, {
            "terms.box.iou_wieght": {"kind": "constant", "value": 1.0},
            "weights.bx": {"kind": "constant", "value": 1.0},
            "weights.box": {"kind": "linear", "start": 1.0, "end": -1.0, "steps": 3},
            "terms.cls.gamma": {"kind": "constant", "value": 1.0, "warmup_steps": 2, "warmup_start": 11.0},
        })
    errors = dict(info.value.errors)
    assert list(errors) == ["terms.box.iou_wieght", "weights.bx", "weights.box", "terms.cls.gamma"]
    valid = schedulable_paths(mixture)
    assert {"weights.box", "weights.cls", "terms.box.iou_weight", "terms.cls.gamma"} <= set(valid)
    for path in ("terms.box.iou_wieght", "weights.bx"):
        assert errors[path].endswith("valid paths: " + ", ".join(valid))
    assert errors["weights.box"] == "the schedule reaches -1.0, which the field rejects: Input should be greater than or equal to 0"
    assert "reaches 11.0" in errors["terms.cls.gamma"] and "less than or equal to 10" in errors["terms.cls.gamma"]
    assert losskit.config_to_dict(mixture.config) == before  # nothing was set


def test_a_tensor_step_is_refused_without_reading_it():
    """Curriculum.step is Python arithmetic: a device step counter is refused, not synchronised."""
    curriculum = Curriculum(losskit.build("focal"), {"gamma": LINEAR})
    with pytest.raises(TypeError, match=r"step: expected a Python int \(the global step\), got a tensor on meta"):
        curriculum.step(torch.empty((), dtype=torch.long, device="meta"))
    assert curriculum.last_step == 0
