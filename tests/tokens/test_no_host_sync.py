"""No host synchronisation in the token losses' hot path.

On the ``meta`` device every read of a value back to the host (``.item()``, ``bool()``,
``int()``, ``.tolist()``) raises, so a full forward + backward there proves that neither
loss, its input checks nor its chunk loops wait for the device (on CUDA the label-range
and count checks become ``torch._assert_async``).
"""

from __future__ import annotations

import pytest
import torch

import losskit


def test_meta_tensors_cannot_be_read_on_the_host():
    with pytest.raises(RuntimeError, match="meta"):
        bool(torch.ones((), device="meta") > 0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", ["token_ce", "linear_token_ce"])
def test_forward_and_backward_never_read_values_back(name, reduction):
    meta = torch.device("meta")
    hidden = torch.empty(2, 7, 3, device=meta, requires_grad=True)  # [B, T, H]
    weight = torch.empty(5, 3, device=meta, requires_grad=True)  # [V, H]
    bias = torch.empty(5, device=meta, requires_grad=True)
    labels = torch.empty(2, 7, dtype=torch.long, device=meta)
    weights = torch.empty(2, 7, device=meta, requires_grad=True)
    config = {"reduction": reduction, "z_loss": 0.1, "label_smoothing": 0.1}
    num_items = {"num_items_in_batch": torch.empty((), device=meta)} if reduction == "mean" else {}
    if name == "token_ce":
        loss_fn, inputs, extra = losskit.build(name, **config), (hidden @ weight.T + bias,), {}
    else:  # several chunks, so the loop runs more than once
        loss_fn, inputs, extra = losskit.build(name, chunk_size=3, **config), (hidden, weight), {"bias": bias}
    out = loss_fn.compute(*inputs, labels, weights=weights, **num_items, **extra)
    out.loss.sum().backward()
    assert out.loss.shape == (() if reduction != "none" else (2, 7))
    assert hidden.grad.shape == hidden.shape and weight.grad.shape == weight.shape and bias.grad.shape == bias.shape
    assert weights.grad.shape == weights.shape
    assert set(out.metrics) == {"accuracy", "num_tokens", "mean_log_z"}
