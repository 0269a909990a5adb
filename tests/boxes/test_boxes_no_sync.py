"""``bbox`` reads no tensor value unless a value check asks for it: no host sync on CUDA by default."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

import losskit

BOX = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 2.0, 3.0], [1.0, 1.0, 1.5, 1.5]])


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
@pytest.mark.parametrize("degenerate", ["raise", "clamp"])
def test_torch_compile_sees_one_graph_when_no_value_is_read(kind: str, degenerate: str) -> None:
    loss = losskit.build("bbox", iou_loss=kind, degenerate=degenerate, check_inputs="never", smooth_l1_beta=0.1)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(loss)(BOX, BOX * 1.1, weights=torch.ones(3), num_boxes=torch.tensor(2.0))
    assert explained.graph_break_count == 0, explained.break_reasons


def test_the_cpu_value_checks_are_what_breaks_the_graph() -> None:
    """The contrast: under auto, CPU tensors are checked (one read), which torch.compile sees."""
    torch._dynamo.reset()
    explained = torch._dynamo.explain(losskit.build("bbox"))(BOX, BOX * 1.1)
    assert explained.graph_break_count >= 1


@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_meta_tensors_need_no_data_under_auto(fmt: str, reduction: str) -> None:
    pred = torch.empty(6, 4, device="meta", requires_grad=True)
    weights = torch.empty(6, device="meta", requires_grad=True)
    loss = losskit.build("bbox", box_format=fmt, reduction=reduction, iou_loss="ciou", degenerate="raise")
    out = loss.compute(pred, torch.empty(6, 4, device="meta"), weights=weights)
    assert out.loss.shape == (() if reduction == "mean" else (6,))
    out.loss.sum().backward()
    assert pred.grad.shape == (6, 4) and weights.grad.shape == (6,)
