"""Hostile and edge inputs of the token losses on every path (issue 18's token items, the input
policy of issue 17): masked vocabularies (-inf logits / bias), huge logits with z_loss=0,
bad ``num_items_in_batch``, an empty vocabulary, NaN inputs, mixed devices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import losskit

INF = float("inf")
# (loss name, config) for every path: token_ce on PyTorch / Triton, linear_token_ce fused
# (one and several chunks), recomputing (reduction="none") and Triton
PATHS = [
    ("token_ce", {"kernel": "torch"}),
    ("token_ce", {"kernel": "triton"}),
    ("linear_token_ce", {"kernel": "torch"}),
    ("linear_token_ce", {"kernel": "torch", "chunk_size": 2}),
    ("linear_token_ce", {"kernel": "torch", "chunk_size": 2, "reduction": "none"}),
    ("linear_token_ce", {"kernel": "triton", "chunk_size": 2}),
]


def _run(name, config, logits, labels, bias=None):
    """Loss and gradient of ``logits + bias`` (``bias [V]`` may hold -inf: a masked class).

    For linear_token_ce: hidden = I, weight = logits.T and the bias, so hidden @ W.T + b
    are the same logits; the gradient of the logits is then weight's, transposed.
    """
    loss_fn = losskit.build(name, **config)
    if name == "token_ce":
        x = logits.clone().requires_grad_(True)
        loss = loss_fn(x if bias is None else x + bias, labels)
        loss.sum().backward()
        return loss, x.grad
    *lead, v = logits.shape
    rows = logits.reshape(-1, v)
    hidden = torch.eye(rows.shape[0]).reshape(*lead, rows.shape[0])
    weight = rows.T.contiguous().requires_grad_(True)
    loss = loss_fn(hidden, weight, labels, bias=bias)
    loss.sum().backward()
    return loss, weight.grad.T.reshape(logits.shape)


def _masked(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    bias = torch.zeros(shape[-1])
    bias[0] = -INF  # class 0 masked (ignored rows point at class 0 internally)
    return torch.randn(*shape, generator=gen), bias


@pytest.mark.parametrize(("name", "config"), PATHS)
def test_masked_vocabulary_gives_finite_gradients(tok, interpreted, name, config):
    """Issue 18, item 1: -inf logits on ignored rows and on the shift-dropped last position."""
    logits, bias = _masked((2, 3, 7), 0)
    labels = torch.tensor([[1, -100, 2], [3, 4, -100]])
    config = config | {"z_loss": 1e-3}  # (label smoothing over a masked class is infinite, as in F.cross_entropy)
    loss, grad = _run(name, config, logits, labels, bias)
    x = logits.double().requires_grad_(True)
    kw = {"reduction": config.get("reduction", "mean"), "z_loss": 1e-3}
    want = tok.reference(x + bias.double(), labels, shift=True, **kw)[0]
    want.sum().backward()
    assert torch.isfinite(grad).all(), grad
    tok.assert_close(loss.detach(), want.detach(), rtol=1e-5, what="loss")
    tok.assert_close(grad, x.grad, rtol=1e-4, atol=1e-6, what="grad")


@pytest.mark.parametrize(("name", "config"), PATHS)
def test_2d_masked_vocabulary_matches_f_cross_entropy(interpreted, name, config):
    """The issue's reproduction: lg[:, 0] = -inf with an ignored row."""
    logits, bias = _masked((3, 7), 1)
    labels = torch.tensor([1, -100, 2])
    loss, grad = _run(name, config, logits, labels, bias)
    x = logits.clone().requires_grad_(True)
    want = F.cross_entropy(x + bias, labels, reduction=config.get("reduction", "mean"))
    want.sum().backward()
    torch.testing.assert_close(loss.detach(), want.detach())
    torch.testing.assert_close(grad, x.grad)


@pytest.mark.parametrize(("name", "config"), PATHS)
def test_huge_logits_with_z_loss_off_stay_finite(interpreted, name, config):
    """Issue 18, item 6: |logits| ~ 1e20 with z_loss=0 must not compute 0 * inf."""
    logits = torch.tensor([[3e20, -1e20, 0.0, 1e19], [0.0, 2e20, -3e20, 5.0]])
    labels = torch.tensor([0, 2])
    loss, grad = _run(name, config, logits, labels)
    x = logits.clone().requires_grad_(True)
    want = F.cross_entropy(x, labels, reduction=config.get("reduction", "mean"))
    want.sum().backward()
    torch.testing.assert_close(loss.detach(), want.detach())
    torch.testing.assert_close(grad, x.grad)


@pytest.mark.parametrize("name", ["token_ce", "linear_token_ce"])
def test_infinite_num_items_is_a_clear_error(name):
    logits = torch.randn(3, 5)
    args = (logits,) if name == "token_ce" else (torch.randn(3, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="num_items_in_batch: expected a finite positive count"):
        losskit.build(name)(*args, torch.tensor([0, 1, 2]), num_items_in_batch=torch.tensor(INF))


@pytest.mark.parametrize("name", ["token_ce", "linear_token_ce"])
def test_num_items_on_another_device_names_both_devices(name):
    args = (torch.randn(3, 5),) if name == "token_ce" else (torch.randn(3, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"num_items_in_batch: expected a tensor on cpu .* got meta"):
        losskit.build(name)(*args, torch.tensor([0, 1, 2]), num_items_in_batch=torch.tensor(3, device="meta"))


def test_empty_vocabulary_is_a_clear_error():
    with pytest.raises(ValueError, match=r"logits: expected a last dimension of at least 1"):
        losskit.build("token_ce")(torch.randn(3, 0), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"weight: expected a vocabulary of at least 1 class"):
        losskit.build("linear_token_ce")(torch.randn(3, 4), torch.randn(0, 4), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize(
    ("name", "arg", "index"),
    [("token_ce", "logits", 0), ("linear_token_ce", "hidden", 0), ("linear_token_ce", "weight", 1), ("linear_token_ce", "bias", 2)],
)
def test_nan_inputs_raise_under_the_policy(name, arg, index):
    args = [torch.randn(3, 5)] if name == "token_ce" else [torch.randn(3, 4), torch.randn(5, 4), torch.randn(5)]
    args[index][1, ...] = float("nan")
    labels = torch.tensor([0, 1, 2])
    kw = {} if name == "token_ce" else {"bias": args.pop()}
    with pytest.raises(ValueError, match=f"{arg}: expected finite values"):
        losskit.build(name)(*args, labels, **kw)
    out = losskit.build(name, check_inputs="never")(*args, labels, **kw)  # skipped: NaN out, no error
    assert torch.isnan(out)


def test_plus_inf_logits_raise_but_minus_inf_is_a_masked_class():
    logits = torch.randn(2, 4)
    logits[0, 1] = INF
    with pytest.raises(ValueError, match=r"logits: expected finite values or -inf .* index \(0, 1\)"):
        losskit.build("token_ce")(logits, torch.tensor([0, 1]))
    logits[0, 1] = -INF
    assert torch.isfinite(losskit.build("token_ce")(logits, torch.tensor([0, 1])))


def test_label_range_check_follows_the_policy():
    logits, labels = torch.randn(2, 4), torch.tensor([0, 9])
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 4\)"):
        losskit.build("token_ce")(logits, labels)
    with pytest.raises(RuntimeError, match="out of bounds"):  # unchecked: the gather fails instead
        losskit.build("token_ce", check_inputs="never")(logits, labels)


@pytest.mark.parametrize("name", ["token_ce", "linear_token_ce"])
def test_class_weights_on_another_device_names_both(name):
    args = (torch.randn(3, 5),) if name == "token_ce" else (torch.randn(3, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"class_weights: expected a tensor on cpu .* got meta"):
        losskit.build(name)(*args, torch.tensor([0, 1, 2]), class_weights=torch.ones(5, device="meta"))


def test_bad_class_weights():
    logits, labels = torch.randn(3, 5), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"class_weights: expected shape \(5,\)"):
        losskit.build("token_ce")(logits, labels, class_weights=torch.ones(4))
    with pytest.raises(ValueError, match="class_weights: expected non-negative"):
        losskit.build("token_ce")(logits, labels, class_weights=-torch.ones(5))


def test_torch_path_compiles_without_graph_breaks():
    """``torch.compile(fullgraph=True)`` needs one graph: dynamo's explain reports none broken."""
    loss_fn = losskit.build("token_ce", kernel="torch", check_inputs="never", z_loss=1e-3)
    logits = torch.randn(2, 5, 11, requires_grad=True)
    labels = torch.randint(0, 11, (2, 5))
    explained = torch._dynamo.explain(loss_fn)(logits, labels)
    assert explained.graph_break_count == 0, explained.break_reasons
