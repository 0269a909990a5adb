"""The grounding YAML of docs/mixtures.md: loaded, scheduled and run (clip + token_ce + bbox)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import losskit
from losskit.testing import check_loss

DOC = Path(__file__).resolve().parents[2] / "docs" / "mixtures.md"


@pytest.fixture
def grounding_yaml(tmp_path) -> Path:
    text = re.search(r"```yaml\n(# grounding\.yaml\n.*?)```", DOC.read_text(), re.S).group(1)
    path = tmp_path / "grounding.yaml"
    path.write_text(text)
    return path


def grounding_inputs(seed: int, b: int = 4, t: int = 6, v: int = 11, d: int = 8):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(b, d, generator=g, requires_grad=True)
    txt = (img.detach() + 0.5 * torch.randn(b, d, generator=g)).requires_grad_(True)
    logits = torch.randn(b, t, v, generator=g, requires_grad=True)
    labels = torch.randint(0, v, (b, t), generator=g)
    target = torch.rand(b, 4, generator=g) * 0.3 + 0.3  # cxcywh
    pred = (target + 0.05 * torch.randn(b, 4, generator=g)).requires_grad_(True)
    return {"itc": (img, txt), "lm": (logits, labels), "box": (pred, target)}


def test_docs_grounding_config_loads_schedules_and_runs(grounding_yaml):
    mixture = losskit.build(losskit.load_config(grounding_yaml, key="loss"))
    curriculum = losskit.Curriculum.from_file(mixture, grounding_yaml)
    assert set(mixture.terms) == {"itc", "lm", "box"}
    assert mixture.config.terms["box"].box_format == "cxcywh"  # the detr preset

    values = curriculum.step(500)
    assert values == {
        "weights.box": pytest.approx(0.5),
        "terms.itc.temperature": pytest.approx(0.03 + 0.04 * (1 + torch.cos(torch.tensor(torch.pi * 300 / 5000)).item()) / 2),
        "terms.box.iou_weight": 2.0,
    }
    inputs = grounding_inputs(0)
    out = mixture.compute(inputs)
    terms = {name: losskit.build(losskit.config_to_dict(mixture.config.terms[name])) for name in inputs}
    want = sum(mixture.config.weights[name] * terms[name](*inputs[name]) for name in inputs)
    torch.testing.assert_close(out.loss, want)
    assert out.metrics["itc/temperature"].item() == pytest.approx(values["terms.itc.temperature"], rel=1e-5)
    out.loss.backward()
    assert all(t.grad is not None for pair in inputs.values() for t in pair if t.requires_grad)


def test_learnable_clip_temperature_cannot_be_scheduled(grounding_yaml):
    config = losskit.config_to_dict(losskit.load_config(grounding_yaml, key="loss"))
    config["terms"]["itc"]["learnable_temperature"] = True
    mixture = losskit.build(config)
    assert "terms.itc.temperature" in mixture.learnable_fields()
    with pytest.raises(losskit.errors.ConfigError, match="terms.itc.temperature: is currently the learnable parameter"):
        losskit.Curriculum.from_file(mixture, grounding_yaml)
    # its parameter is a parameter of the mixture
    assert [n for n, _ in mixture.named_parameters()] == ["terms.itc.log_logit_scale"]


def test_default_mixture_is_the_grounding_trio_and_conforms():
    mixture = losskit.build("mixture")
    assert {name: losskit.get_spec(losskit.config_to_dict(cfg)["name"]).name for name, cfg in mixture.config.terms.items()} == {
        "itc": "clip",
        "lm": "token_ce",
        "box": "bbox",
    }
    report = check_loss("mixture", seeds=1, checks=["finite", "low_precision", "state_dict"])
    assert report.ok


def test_without_term_metrics_the_value_is_the_same_and_matches_the_bench_baseline():
    from losskit_plugins.mixture import SIZES, example_inputs, terms_by_hand

    inputs = example_inputs(SIZES["tiny"], dtype=torch.float32, device=torch.device("cpu"), generator=torch.Generator().manual_seed(3))
    full = losskit.build("mixture").compute(*inputs.args)
    lean = losskit.build("mixture", term_metrics=False).compute(*inputs.args)
    torch.testing.assert_close(lean.loss, full.loss)
    torch.testing.assert_close(terms_by_hand(*inputs.args), full.loss)
    assert "itc/accuracy_i2t" in full.metrics and set(lean.metrics) == {"weight/itc", "weight/lm", "weight/box"}
