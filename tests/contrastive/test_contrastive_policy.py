"""The input policy and the no-host-sync contract of ``clip``, ``siglip`` and ``infonce``:
``torch._dynamo.explain`` finds no graph break for any input form, a ``meta``-device run
(no data) goes through forward and backward, value checks follow ``check_inputs``, empty
batches give a connected zero, and inputs on two devices are refused before autocast."""

from __future__ import annotations

import pytest
import torch

import losskit

B, D = 8, 4


def _inputs(device: str = "cpu"):
    g = torch.Generator().manual_seed(3)
    a = torch.randn(B, D, generator=g).to(device).requires_grad_()
    b = torch.randn(B, D, generator=g).to(device).requires_grad_()
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]).to(device)
    mask = (torch.rand(B, B, generator=g) > 0.6).to(device)
    shared, per_query = torch.randn(5, D, generator=g).to(device), torch.randn(B, 5, D, generator=g).to(device)
    return a, b, groups, mask, shared, per_query


def _forms(device: str = "cpu"):
    """``(id, loss name, config, args, kwargs)`` for every input form."""
    a, b, groups, mask, shared, per_query = _inputs(device)
    return [
        ("clip", "clip", {}, (a, b), {}),
        ("clip-groups", "clip", {}, (a, b), {"group_ids": groups}),
        ("clip-tiled-groups", "clip", {"chunk_size": 3, "label_smoothing": 0.1}, (a, b), {"group_ids": groups}),
        ("siglip", "siglip", {}, (a, b), {}),
        ("siglip-tiled-groups", "siglip", {"chunk_size": 3}, (a, b), {"group_ids": groups}),
        ("siglip-negative-only", "siglip", {}, (a, b), {"negative_only": True}),
        ("infonce", "infonce", {}, (a, b), {}),
        ("infonce-mask", "infonce", {"symmetric": True}, (a, b), {"positive_mask": mask}),
        ("infonce-groups", "infonce", {}, (a, b), {"group_ids": groups}),
        ("infonce-shared-negatives", "infonce", {}, (a, b, shared), {}),
        ("infonce-per-query-negatives", "infonce", {"hard_negative_beta": 1.0}, (a, b, per_query), {"group_ids": groups}),
        ("infonce-tiled", "infonce", {"chunk_size": 3, "symmetric": True}, (a, b, shared), {"group_ids": groups}),
        ("infonce-exclude-self", "infonce", {"exclude_self": True}, (a, a), {"group_ids": groups}),
    ]


FORM_IDS = [f[0] for f in _forms()]


@pytest.mark.parametrize(
    "form, method", [(f, "compute") for f in FORM_IDS] + [(f, "forward") for f in ("clip", "siglip-tiled-groups", "infonce-tiled")]
)
def test_no_graph_break_for_any_input_form(form, method):
    """``compute`` (the metrics too) for every form; ``forward`` (no metrics) for a few."""
    _, name, cfg, args, kwargs = next(f for f in _forms() if f[0] == form)
    loss_fn = losskit.build(name, distributed="none", **cfg)
    call = loss_fn if method == "forward" else (lambda *a, **k: loss_fn.compute(*a, **k).loss)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(call)(*args, **kwargs)
    assert explained.graph_break_count == 0, [r.reason for r in explained.break_reasons]
    assert explained.graph_count == 1


@pytest.mark.parametrize("form", FORM_IDS)
def test_meta_device_run_needs_no_data(form):
    _, name, cfg, args, kwargs = next(f for f in _forms("meta") if f[0] == form)
    loss_fn = losskit.build(name, distributed="none", **cfg).to("meta")
    out = loss_fn.compute(*args, **kwargs)
    assert out.loss.device.type == "meta" and out.loss.shape == ()
    out.loss.backward()
    assert args[0].grad is not None and args[0].grad.shape == (B, D)


@pytest.mark.parametrize("name", ["clip", "siglip", "infonce"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_features_raise_on_cpu_by_default(name, bad):
    a, b, *_ = _inputs()
    b = b.detach().clone()
    b[2, 1] = bad
    second = "positive_key" if name == "infonce" else "text_features"
    with pytest.raises(ValueError, match=rf"{second}: expected finite values, got {bad} at index \(2, 1\)"):
        losskit.build(name, distributed="none")(a, b)
    out = losskit.build(name, distributed="none", check_inputs="never")(a, b)  # opted out: no check, NaN through
    assert not torch.isfinite(out)


def test_non_finite_explicit_negatives_and_bad_mask_values_raise():
    a, b, _, mask, shared, _ = _inputs()
    shared = shared.clone()
    shared[0, 0] = float("nan")
    with pytest.raises(ValueError, match="negative_keys: expected finite values"):
        losskit.build("infonce", distributed="none")(a, b, shared)
    with pytest.raises(ValueError, match=r"positive_mask: expected 0/1 .* got values in \[0, 2\]"):
        losskit.build("infonce", distributed="none")(a, b, positive_mask=mask.long() * 2)
    int_mask = losskit.build("infonce", distributed="none")(a, b, positive_mask=mask.long())
    torch.testing.assert_close(int_mask, losskit.build("infonce", distributed="none")(a, b, positive_mask=mask))


@pytest.mark.parametrize("name", ["clip", "siglip", "infonce"])
@pytest.mark.parametrize("chunk", [None, 2])
def test_empty_batch_is_a_connected_zero(name, chunk):
    a = torch.randn(0, D, requires_grad=True)
    b = torch.randn(0, D, requires_grad=True)
    mean = losskit.build(name, distributed="none", chunk_size=chunk)
    out = mean.compute(a, b)
    assert out.loss.item() == 0.0 and out.loss.requires_grad
    out.loss.backward()
    assert a.grad is not None and a.grad.shape == (0, D)
    params = [p for p in mean.parameters() if p.requires_grad]
    for p in params:
        assert p.grad is not None and p.grad.item() == 0.0
    none = losskit.build(name, distributed="none", chunk_size=chunk, reduction="none")(a, b)
    assert none.shape == (0,) and none.requires_grad


@pytest.mark.parametrize("name", ["clip", "siglip", "infonce"])
@pytest.mark.parametrize("which", [0, 1])
def test_inputs_on_two_devices_name_both_before_autocast(name, which):
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    pair = [a, b]
    pair[which] = pair[which].to("meta")
    names = ("query", "positive_key") if name == "infonce" else ("image_features", "text_features")
    want = f"{names[0]} on {pair[0].device}, {names[1]} on {pair[1].device}"
    for ctx in (torch.autocast("cpu", dtype=torch.bfloat16), torch.autocast("cpu", enabled=False)):
        with ctx, pytest.raises(ValueError, match=want):
            losskit.build(name, distributed="none")(*pair)


@pytest.mark.parametrize(
    "name, kwargs, arg",
    [
        ("clip", {"group_ids": torch.zeros(4, dtype=torch.long, device="meta")}, "group_ids on meta"),
        ("infonce", {"positive_mask": torch.eye(4, dtype=torch.bool, device="meta")}, "positive_mask on meta"),
        ("infonce", {"negative_keys": torch.randn(2, 3, device="meta")}, "negative_keys on meta"),
    ],
)
def test_side_inputs_on_another_device_are_named(name, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        losskit.build(name, distributed="none")(torch.randn(4, 3), torch.randn(4, 3), **kwargs)
