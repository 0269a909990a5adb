"""The input policy inside ``mixture``: errors name the term, devices, empty batches, NaN, no host sync."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

import losskit

BOX = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 2.0, 3.0]])
GROUNDING = {"lm": {"name": "token_ce"}, "box": {"name": "bbox"}}


def grounding(**config) -> losskit.Loss:
    return losskit.build({"name": "mixture", "terms": GROUNDING, **config})


def lm_inputs(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 5, requires_grad=True), torch.arange(n) % 5


def test_a_wrong_keyword_names_the_term_and_shows_its_signature() -> None:
    logits, labels = lm_inputs()
    with pytest.raises(TypeError) as info:
        grounding()(lm={"logit": logits, "labels": labels}, box=(BOX, BOX))
    message = str(info.value)
    assert message.startswith("terms.lm: got an unexpected keyword argument 'logit' (did you mean 'logits'?)")
    assert "TokenCELoss.compute(logits, labels, *, num_items_in_batch=None, weights=None, class_weights=None)" in message


def test_a_missing_input_names_the_term() -> None:
    with pytest.raises(TypeError, match=r"^terms.box: missing a required argument: 'target'; BoxLoss.compute\(pred, target"):
        grounding()(lm=lm_inputs(), box=(BOX,))


@pytest.mark.parametrize(
    ("box", "error", "match"),
    [
        ((BOX[:, :3], BOX[:, :3]), ValueError, r"^terms.box: pred: size 3 at dim 1 does not match the 4 box coordinates"),
        ((BOX.long(), BOX), TypeError, r"^terms.box: pred: expected a floating-point tensor, got dtype torch.int64"),
        ((BOX, BOX.to("meta")), ValueError, r"^terms.box: inputs must be on one device, got pred on cpu, target on meta"),
    ],
)
def test_a_bad_tensor_names_the_term_keeping_the_exception_type(box, error, match: str) -> None:
    with pytest.raises(error, match=match) as info:
        grounding()(lm=lm_inputs(), box=box)
    assert type(info.value) is error and info.value.__cause__ is not None  # the term's own error is chained


def test_terms_on_different_devices_name_both() -> None:
    logits, labels = lm_inputs()
    meta = (torch.empty(3, 5, device="meta"), torch.zeros(3, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match=r"terms' losses must be on one device, got terms.lm on meta, terms.box on cpu"):
        grounding()(lm=meta, box=(BOX, BOX + 0.1))
    assert logits.grad is None


def test_a_non_finite_term_loss_names_the_term_on_cpu() -> None:
    pred = BOX.clone()
    pred[1, 0] = float("nan")
    terms = {"lm": {"name": "token_ce"}, "box": {"name": "bbox", "check_inputs": "never"}}
    with pytest.raises(ValueError, match=r"terms.box.loss: expected finite values, got nan"):
        losskit.build({"name": "mixture", "terms": terms})(lm=lm_inputs(), box=(pred, BOX))
    quiet = losskit.build({"name": "mixture", "terms": terms, "check_inputs": "never"})(lm=lm_inputs(), box=(pred, BOX))
    assert torch.isnan(quiet)
    with pytest.raises(ValueError, match=r"^terms.box: pred: expected finite values, got NaN or inf at index 1"):
        grounding()(lm=lm_inputs(), box=(pred, BOX))  # the term's own check, named


@pytest.mark.parametrize("weighting", ["static", "uncertainty", "dwa"])
def test_an_empty_batch_gives_a_connected_zero(weighting: str) -> None:
    logits, labels = lm_inputs(0)
    pred = torch.zeros(0, 4, requires_grad=True)
    total = grounding(weighting=weighting)(lm=(logits, labels), box=(pred, torch.zeros(0, 4)))
    assert total.item() == 0.0  # uncertainty adds s / 2, 0 at init
    total.backward()
    assert logits.grad.shape == (0, 5) and pred.grad.shape == (0, 4)


def bbox_mixture(weighting: str, **extra) -> losskit.Loss:
    """Two ``bbox`` terms that read no value (check_inputs never): nothing in them breaks a graph."""
    terms = {
        "giou": {"name": "bbox", "l1_weight": 0.0, "check_inputs": "never"},
        "box": {"name": "bbox", "iou_loss": "ciou", "check_inputs": "never"},
    }
    return losskit.build({
        "name": "mixture", "terms": terms, "weights": {"box": 2.0}, "weighting": weighting, "dwa": {"window": 1}, **extra,
    })


@pytest.mark.parametrize("weighting", ["static", "uncertainty", "dwa"])
def test_torch_compile_sees_one_graph(weighting: str) -> None:
    mixture = bbox_mixture(weighting, check_inputs="never")
    boxes = BOX * torch.tensor([1.0, 1.0, 1.5, 1.2])

    def step(b: torch.Tensor) -> torch.Tensor:
        return mixture(giou=(b, BOX), box={"pred": b, "target": BOX})

    for _ in range(3):  # past DWA's first two windows: the ratio path
        step(boxes)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(step)(boxes)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.parametrize("weighting", ["static", "uncertainty", "dwa"])
def test_meta_tensors_run_with_a_curriculum_without_reading_values(weighting: str) -> None:
    """Under check_inputs auto on a non-CPU device the mixture, its terms and Curriculum.step read no value."""
    mixture = bbox_mixture(weighting).to("meta")
    curriculum = losskit.Curriculum(mixture, {"weights.box": {"kind": "linear", "start": 0.0, "end": 1.0, "steps": 10}})
    pred = torch.empty(5, 4, device="meta", requires_grad=True)
    target = torch.empty(5, 4, device="meta")
    for step in range(4):
        curriculum.step(step)
        out = mixture.compute(giou=(pred, target), box=(pred, target))
        assert out.loss.device.type == "meta" and out.loss.shape == ()
    out.loss.backward()
    assert pred.grad.shape == (5, 4)


def test_forward_skips_metrics_and_equals_compute() -> None:
    mixture = grounding(weights={"box": 0.5})
    logits, labels = lm_inputs()
    full = mixture.compute(lm=(logits, labels), box=(BOX, BOX * 1.1))
    assert {"weight/lm", "weight/box", "box/mean_iou"} <= set(full.metrics)
    torch.testing.assert_close(mixture(lm=(logits, labels), box=(BOX, BOX * 1.1)), full.loss, rtol=0, atol=0)


def test_changed_weights_reach_the_next_call() -> None:
    """The weight vector is cached on the device; a new config value (e.g. from a curriculum) replaces it."""
    mixture = grounding()
    inputs = {"lm": lm_inputs(), "box": (BOX, BOX * 1.1)}
    parts = mixture.compute(**inputs).parts
    mixture.config.weights = {"lm": 1.0, "box": 3.0}
    torch.testing.assert_close(mixture(**inputs), parts["lm"] + 3.0 * parts["box"])
