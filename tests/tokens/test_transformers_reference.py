"""``token_ce`` and ``linear_token_ce`` against the real Hugging Face transformers code.

References (transformers >= 4.46, run here with the installed 5.x):

- ``transformers.loss.loss_utils.ForCausalLMLoss``: upcast to fp32, pad the labels with
  ``ignore_index`` and shift them left (or take pre-shifted ``shift_labels``), then
  ``fixed_cross_entropy``: mean over supervised tokens, or ``sum / num_items_in_batch``.
- ``transformers.trainer_pt_utils.LabelSmoother``: what ``Trainer`` uses instead when
  ``label_smoothing_factor > 0`` (``ForCausalLMLoss`` takes no smoothing), same divisor.

``num_items_in_batch`` is drawn in the forms transformers passes it: absent, a Python
int (custom trainers), an int64 tensor (the summed ``labels.ne(-100)``) and a float
tensor (``Trainer._get_num_items_in_batch`` divides by the parallel sizes).

One deliberate difference, required by the token-loss issue: with every label ignored
and no ``num_items_in_batch``, transformers returns NaN (0 / 0); losskit returns a zero
attached to the graph.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losskit

from transformers.loss.loss_utils import ForCausalLMLoss
from transformers.trainer_pt_utils import LabelSmoother


def hf_loss(logits, labels, *, hf_shifts, num_items, label_smoothing, ignore_index):
    """The transformers loss of ``logits [..., V]``: ``ForCausalLMLoss``, or ``LabelSmoother`` when smoothing."""
    if label_smoothing > 0:
        smoother = LabelSmoother(epsilon=label_smoothing, ignore_index=ignore_index)
        return smoother({"logits": logits}, labels, shift_labels=hf_shifts, num_items_in_batch=num_items)
    given_labels = {"labels": labels} if hf_shifts else {"labels": None, "shift_labels": labels}
    return ForCausalLMLoss(
        logits, vocab_size=logits.shape[-1], num_items_in_batch=num_items, ignore_index=ignore_index, **given_labels
    )


def _targets(labels, hf_shifts, ignore_index):
    """Supervised targets as transformers counts them (``labels[..., 1:]`` when it shifts)."""
    return int((labels[..., 1:] if hf_shifts else labels).ne(ignore_index).sum())


def draw_problem(data):
    """Shapes, layout, shift mode, ignore pattern, ``num_items_in_batch`` form, smoothing, ignore_index.

    Returns ``(rows_shape, v, labels, losskit_config, hf_kwargs, num_items)``; ``labels`` has
    at least one supervised target unless ``num_items_in_batch`` is given.
    """
    b, t, v = data.draw(st.integers(1, 3), label="B"), data.draw(st.integers(2, 6), label="T"), data.draw(st.integers(2, 9), label="V")
    three_d = data.draw(st.booleans(), label="3-D")
    hf_shifts = data.draw(st.booleans(), label="transformers shifts (else shift_labels=labels)")
    # losskit: None shifts 3-D and not 2-D, so it matches transformers by default in 3-D when
    # transformers shifts, and in 2-D when the labels come pre-shifted; else set it explicitly
    default_matches = three_d == hf_shifts
    shift = data.draw(st.sampled_from([None, hf_shifts]) if default_matches else st.just(hf_shifts), label="shift")
    ignore_index = data.draw(st.sampled_from([-100, -100, -1]), label="ignore_index")
    form = data.draw(st.sampled_from(["none", "int", "int64 tensor", "float tensor"]), label="num_items form")
    pattern = data.draw(st.sampled_from(["none", "some", "all"] if form != "none" else ["none", "some"]), label="ignored")
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16), label="seed"))

    labels = torch.randint(0, v, (b, t), generator=gen)
    if pattern == "some":
        labels = labels.masked_fill(torch.rand(b, t, generator=gen) < 0.5, ignore_index)
        labels[0, 1] = 0  # one target survives the shift
    elif pattern == "all":
        labels = torch.full((b, t), ignore_index)
    if not three_d:
        labels = labels.reshape(-1)
    count = _targets(labels, hf_shifts, ignore_index) + data.draw(st.integers(0, 5), label="tokens in other micro-batches")
    count = max(count, 1)
    num_items = {
        "none": None,
        "int": count,
        "int64 tensor": torch.tensor(count),
        "float tensor": torch.tensor(count) / 1,  # as Trainer: count / (tp * cp * sp)
    }[form]
    eps = data.draw(st.sampled_from([0.0, 0.0, 0.1, 0.4]), label="label_smoothing")
    rows_shape = (b, t) if three_d else (b * t,)
    config = {"shift": shift, "ignore_index": ignore_index, "label_smoothing": eps}
    hf_kwargs = {"hf_shifts": hf_shifts, "label_smoothing": eps, "ignore_index": ignore_index}
    return rows_shape, v, labels, config, hf_kwargs, num_items


@given(st.data())
def test_token_ce_matches_transformers(data):
    rows_shape, v, labels, config, hf_kwargs, num_items = draw_problem(data)
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 999), label="logits seed"))
    logits = (3 * torch.randn(*rows_shape, v, generator=gen)).requires_grad_(True)  # fp32, as transformers computes
    ours = losskit.build("token_ce", **config)(logits, labels, num_items_in_batch=num_items)
    (g_ours,) = torch.autograd.grad(ours, logits)
    ref = hf_loss(logits, labels, num_items=num_items, **hf_kwargs)
    (g_ref,) = torch.autograd.grad(ref, logits)
    assert ours.dtype == ref.dtype == torch.float32 and ours.shape == ref.shape == ()
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-7)


@given(st.data())
def test_linear_token_ce_matches_transformers_on_the_lm_head_logits(data):
    rows_shape, v, labels, config, hf_kwargs, num_items = draw_problem(data)
    h = data.draw(st.integers(1, 6), label="H")
    chunk = data.draw(st.sampled_from([None, 1, 2, 3, 5, 64]), label="chunk_size")
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 999), label="head seed"))
    hidden = torch.randn(*rows_shape, h, generator=gen).requires_grad_(True)  # [B, T, H] or [N, H]
    weight = (1.5 * torch.randn(v, h, generator=gen)).requires_grad_(True)  # [V, H]
    bias = torch.randn(v, generator=gen).requires_grad_(True) if data.draw(st.booleans(), label="bias") else None
    leaves = [x for x in (hidden, weight, bias) if x is not None]

    ours = losskit.build("linear_token_ce", chunk_size=chunk, **config)(
        hidden, weight, labels, bias=bias, num_items_in_batch=num_items
    )
    g_ours = torch.autograd.grad(ours, leaves)
    logits = hidden @ weight.T + (bias if bias is not None else 0)  # what lm_head computes
    ref = hf_loss(logits, labels, num_items=num_items, **hf_kwargs)
    g_ref = torch.autograd.grad(ref, leaves)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    for got, want, name in zip(g_ours, g_ref, ["hidden", "weight", "bias"]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"grad of {name}: {m}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_token_ce_matches_transformers_in_half_precision_with_gradients(dtype):
    """transformers upcasts with ``logits.float()``; losskit computes in fp32 chunk by chunk."""
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 8, 40, generator=gen).to(dtype).requires_grad_(True)
    labels = torch.randint(0, 40, (3, 8), generator=gen)
    labels[:, :3] = -100
    ours = losskit.build("token_ce")(logits, labels, num_items_in_batch=torch.tensor(30))
    (g_ours,) = torch.autograd.grad(ours, logits)
    ref = ForCausalLMLoss(logits, labels, vocab_size=40, num_items_in_batch=torch.tensor(30))
    (g_ref,) = torch.autograd.grad(ref, logits)
    assert ours.dtype == ref.dtype == torch.float32 and g_ours.dtype == g_ref.dtype == dtype
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    # both are the same fp32 gradient rounded to the input dtype: at most one rounding step apart
    torch.testing.assert_close(g_ours.float(), g_ref.float(), rtol=1e-2, atol=1e-4)


@pytest.mark.parametrize("name", ["token_ce", "linear_token_ce"])
def test_all_ignored_without_num_items_is_zero_where_transformers_gives_nan(name):
    gen = torch.Generator().manual_seed(8)
    hidden = torch.randn(2, 5, 3, generator=gen, requires_grad=True)
    weight = torch.randn(7, 3, generator=gen, requires_grad=True)
    labels = torch.full((2, 5), -100)
    labels[:, 0] = 4  # supervised only at position 0, which nothing predicts after the shift
    args = (hidden @ weight.T,) if name == "token_ce" else (hidden, weight)
    ours = losskit.build(name)(*args, labels)
    ref = ForCausalLMLoss(hidden @ weight.T, labels, vocab_size=7)
    assert torch.isnan(ref)  # transformers: 0 supervised tokens / 0
    assert ours.item() == 0.0 and ours.requires_grad
    ours.backward()
    assert not hidden.grad.any() and not weight.grad.any()
    # with the count of a larger (accumulated) batch both are a plain 0
    with_count = losskit.build(name)(*args, labels, num_items_in_batch=torch.tensor(9) / 1)
    ref_count = ForCausalLMLoss(hidden @ weight.T, labels, vocab_size=7, num_items_in_batch=torch.tensor(9) / 1)
    assert with_count.item() == ref_count.item() == 0.0 and with_count.requires_grad


def test_reduction_sum_and_none_are_the_transformers_sum_and_per_token_losses():
    """transformers only reduces by mean or by num_items_in_batch; sum / none are the same terms unreduced."""
    gen = torch.Generator().manual_seed(9)
    logits = torch.randn(2, 6, 5, generator=gen, requires_grad=True)
    labels = torch.randint(0, 5, (2, 6), generator=gen)
    labels[0, 2:4] = -100
    total = losskit.build("token_ce", reduction="sum")(logits, labels)
    torch.testing.assert_close(total, ForCausalLMLoss(logits, labels, vocab_size=5, num_items_in_batch=1))
    per_token = losskit.build("token_ce", reduction="none")(logits, labels)  # [B, T], 0 where ignored
    assert per_token.shape == labels.shape
    count = int(labels[:, 1:].ne(-100).sum())
    torch.testing.assert_close(per_token.sum() / count, ForCausalLMLoss(logits, labels, vocab_size=5))
