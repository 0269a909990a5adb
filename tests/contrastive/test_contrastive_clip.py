"""clip: values and gradients against the float64 brute-force reference, open_clip's
formula, properties, learnable temperature and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import losskit


@st.composite
def clip_cases(draw):
    b = draw(st.integers(1, 7))
    d = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    groups = draw(st.one_of(st.none(), st.lists(st.integers(0, 2), min_size=b, max_size=b)))
    cfg = {
        "label_smoothing": draw(st.sampled_from([0.0, 0.15])),
        "direction": draw(st.sampled_from(["both", "image_to_text", "text_to_image"])),
        "learnable_temperature": draw(st.booleans()),
        "temperature": draw(st.sampled_from([0.07, 0.5, 1.0])),
        "logit_bias": draw(st.sampled_from([None, -0.5])),
        "normalize": draw(st.booleans()),
        "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
        "chunk_size": draw(st.one_of(st.none(), st.integers(1, b + 1))),
        "distributed": "none",
    }
    return b, d, seed, groups, cfg


def reference_clip(ref, img, txt, scale, bias, groups, cfg):
    a, b = (ref.normalize(img), ref.normalize(txt)) if cfg["normalize"] else (img, txt)
    S = scale * a @ b.T + (bias if bias is not None else 0.0)
    n = img.shape[0]
    pos = ref.positives_from(n, n, groups, groups)
    eps = cfg["label_smoothing"]
    i2t = ref.softmax_rows(S, pos, eps=eps)
    t2i = ref.softmax_rows(S.T, ref.transpose(pos), eps=eps)
    per = {"both": (i2t + t2i) / 2, "image_to_text": i2t, "text_to_image": t2i}[cfg["direction"]]
    return ref.reduce(per, cfg["reduction"])


@given(clip_cases())
def test_clip_matches_bruteforce_value_and_gradients(ref, case):
    b, d, seed, groups, cfg = case
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(b, d, generator=g, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(b, d, generator=g, dtype=torch.float64, requires_grad=True)
    loss_fn = losskit.build("clip", **cfg).double()
    gid = None if groups is None else torch.tensor(groups)
    out = loss_fn(img, txt, group_ids=gid)
    params = [p for p in loss_fn.parameters()]
    # reference with its own leaf copies of everything
    img2, txt2 = img.detach().clone().requires_grad_(), txt.detach().clone().requires_grad_()
    # the parameter was created in float32: start the reference from its exact value
    log_scale = torch.tensor(math.log(1 / cfg["temperature"]), dtype=torch.float32).double().requires_grad_()
    scale = log_scale.exp().clamp(max=100.0) if cfg["learnable_temperature"] else torch.tensor(min(1 / cfg["temperature"], 100.0), dtype=torch.float64)
    bias = None if cfg["logit_bias"] is None else torch.tensor(cfg["logit_bias"], dtype=torch.float32).double().requires_grad_()
    want = reference_clip(ref, img2, txt2, scale, bias, groups, cfg)
    torch.testing.assert_close(out, want, rtol=1e-9, atol=1e-10)
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    got_g = torch.autograd.grad((out * w).sum(), [img, txt] + params)
    ref_leaves = [img2, txt2] + ([log_scale] if cfg["learnable_temperature"] else []) + ([bias] if bias is not None else [])
    want_g = torch.autograd.grad((want * w).sum(), ref_leaves, allow_unused=True)
    assert len(got_g) == len(want_g)
    for gg, wg in zip(got_g, want_g):
        torch.testing.assert_close(gg, wg if wg is not None else torch.zeros_like(gg), rtol=1e-8, atol=1e-9)


def test_clip_equals_open_clip_formula():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    loss_fn = losskit.build("clip", distributed="none")
    # open_clip ClipLoss: logit_scale * img @ txt.T, CE both ways, averaged
    a, b = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = (1 / 0.07) * a @ b.T
    labels = torch.arange(16)
    want = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(loss_fn(img, txt), want, rtol=1e-5, atol=1e-6)
    # with a bias and label smoothing: torch's cross_entropy(label_smoothing=...)
    loss_fn = losskit.build("clip", logit_bias=-2.0, label_smoothing=0.1, temperature=0.2, distributed="none")
    logits = 5.0 * a @ b.T - 2.0
    want = (F.cross_entropy(logits, labels, label_smoothing=0.1) + F.cross_entropy(logits.T, labels, label_smoothing=0.1)) / 2
    torch.testing.assert_close(loss_fn(img, txt), want, rtol=1e-5, atol=1e-6)


@given(st.integers(2, 9), st.integers(1, 6), st.integers(0, 2**16), st.booleans())
def test_clip_properties(b, d, seed, grouped):
    g = torch.Generator().manual_seed(seed)
    img, txt = torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(b, d, generator=g, dtype=torch.float64)
    gid = torch.randint(0, 3, (b,), generator=g) if grouped else None
    loss_fn = losskit.build("clip", distributed="none").double()
    base = loss_fn(img, txt, group_ids=gid)
    perm = torch.randperm(b, generator=g)
    # jointly permuting the batch
    torch.testing.assert_close(loss_fn(img[perm], txt[perm], group_ids=None if gid is None else gid[perm]), base)
    # swapping image and text (symmetric loss)
    torch.testing.assert_close(loss_fn(txt, img, group_ids=gid), base)
    # feature scaling with normalize on
    torch.testing.assert_close(loss_fn(img * 3.7, txt * 0.2, group_ids=gid), base)


@pytest.mark.parametrize("b", [1, 2, 5, 64])
def test_clip_all_equal_similarities_give_log_b(b):
    img = torch.ones(b, 4)
    txt = torch.ones(b, 4)
    loss_fn = losskit.build("clip", distributed="none")
    torch.testing.assert_close(loss_fn(img, txt), torch.tensor(math.log(b)))


def test_clip_batch_of_one_is_zero_and_finite():
    img = torch.randn(1, 8, requires_grad=True)
    txt = torch.randn(1, 8, requires_grad=True)
    loss_fn = losskit.build("clip", distributed="none")
    out = loss_fn(img, txt)
    out.backward()
    assert out.item() == 0.0
    assert torch.isfinite(img.grad).all() and torch.isfinite(loss_fn.log_logit_scale.grad)


def test_clip_rows_without_negatives_are_finite():
    # everyone in one group: no negatives anywhere -> every term is 0, no NaN
    img, txt = torch.randn(6, 5, requires_grad=True), torch.randn(6, 5, requires_grad=True)
    loss_fn = losskit.build("clip", distributed="none", label_smoothing=0.0)
    out = loss_fn(img, txt, group_ids=torch.zeros(6, dtype=torch.long))
    out.backward()
    assert out.item() == 0.0
    assert torch.isfinite(img.grad).all() and torch.isfinite(txt.grad).all()


def test_clip_learnable_temperature_gets_gradient_and_is_clamped():
    g = torch.Generator().manual_seed(1)
    img, txt = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    loss_fn = losskit.build("clip", distributed="none")
    assert loss_fn.learnable_fields() == {"temperature": "log_logit_scale"}
    torch.testing.assert_close(loss_fn.log_logit_scale.detach(), torch.tensor(math.log(1 / 0.07)))
    loss_fn(img, txt).backward()
    assert loss_fn.log_logit_scale.grad.abs().item() > 0
    with torch.no_grad():
        loss_fn.log_logit_scale.fill_(math.log(1000.0))
    out = loss_fn.compute(img, txt)
    assert out.metrics["logit_scale"].item() == pytest.approx(100.0)
    loss_fn.zero_grad()
    out.loss.backward()
    assert loss_fn.log_logit_scale.grad.item() == 0.0  # clamped: no gradient beyond max_logit_scale


def test_clip_fixed_temperature_is_read_at_call_time():
    g = torch.Generator().manual_seed(2)
    img, txt = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    loss_fn = losskit.build("clip", learnable_temperature=False, distributed="none")
    assert loss_fn.learnable_fields() == {} and list(loss_fn.parameters()) == []
    first = loss_fn(img, txt)
    loss_fn.config.temperature = 0.5
    torch.testing.assert_close(loss_fn(img, txt), losskit.build("clip", learnable_temperature=False, temperature=0.5)(img, txt))
    assert not torch.equal(first, loss_fn(img, txt))


def test_clip_metrics():
    img = torch.eye(4)
    txt = torch.eye(4)
    out = losskit.build("clip", distributed="none", logit_bias=1.0).compute(img, txt)
    m = out.metrics
    assert m["accuracy_i2t"].item() == 1.0 and m["accuracy_t2i"].item() == 1.0
    assert m["positive_logit"].item() == pytest.approx(1 / 0.07 + 1.0, rel=1e-5)
    assert m["negative_logit"].item() == pytest.approx(1.0, abs=1e-5)
    assert m["temperature"].item() == pytest.approx(0.07)
    assert m["logit_bias"].item() == pytest.approx(1.0)
    assert not any(v.requires_grad for v in m.values())
    txt = torch.eye(4)[[1, 0, 2, 3]]
    m = losskit.build("clip", distributed="none").compute(img, txt).metrics
    assert m["accuracy_i2t"].item() == 0.5
    # with groups a hit is any positive
    m = losskit.build("clip", distributed="none").compute(img, txt, group_ids=torch.tensor([0, 0, 1, 2])).metrics
    assert m["accuracy_i2t"].item() == 1.0


def test_clip_half_precision_inputs_give_fp32():
    g = torch.Generator().manual_seed(3)
    img, txt = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    loss_fn = losskit.build("clip", distributed="none")
    for dtype in (torch.float16, torch.bfloat16):
        out = loss_fn(img.to(dtype), txt.to(dtype))
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, loss_fn(img.to(dtype).float(), txt.to(dtype).float()))


def test_clip_conformance():
    from losskit.testing import check_loss

    check_loss("clip")
    check_loss("clip", config={"chunk_size": 2, "logit_bias": 0.3, "label_smoothing": 0.1})


BAD = [
    (lambda: (torch.randn(4, 3), torch.randn(5, 3)), {}, ValueError, "text_features"),
    (lambda: (torch.randn(4, 3), torch.randn(4, 2)), {}, ValueError, "feature dim"),
    (lambda: (torch.randn(4), torch.randn(4)), {}, ValueError, "image_features: expected a 2-D"),
    (lambda: (torch.randn(2, 4, 3), torch.randn(2, 4, 3)), {}, ValueError, "image_features: expected a 2-D"),
    (lambda: (torch.ones(4, 3, dtype=torch.long), torch.randn(4, 3)), {}, TypeError, "image_features"),
    (lambda: (torch.randn(4, 3), torch.randn(4, 3)), {"group_ids": torch.zeros(3, dtype=torch.long)}, ValueError, "group_ids"),
    (lambda: (torch.randn(4, 3), torch.randn(4, 3)), {"group_ids": torch.zeros(4)}, TypeError, "group_ids"),
    (lambda: (torch.randn(4, 3), torch.randn(4, 3)), {"group_ids": torch.zeros(4, 1, dtype=torch.long)}, ValueError, "group_ids"),
]


@pytest.mark.parametrize("make, kwargs, exc, text", BAD)
def test_clip_bad_input(make, kwargs, exc, text):
    img, txt = make()
    with pytest.raises(exc, match=text):
        losskit.build("clip", distributed="none")(img, txt, **kwargs)


@pytest.mark.parametrize("field, value", [("temperature", 0.0), ("temperature", -1.0), ("max_logit_scale", 0.0), ("label_smoothing", 1.0)])
def test_clip_bad_config(field, value):
    with pytest.raises(losskit.errors.ConfigError, match=field):
        losskit.build("clip", **{field: value})


def test_clip_tiling_rejects_hard_negatives_at_build_time():
    with pytest.raises(losskit.errors.ConfigError, match="chunk_size"):
        losskit.build("clip", chunk_size=64, hard_negative_beta=1.0)


@pytest.mark.parametrize("name", ["clip", "siglip", "infonce"])
def test_logits_are_fp32_inside_autocast(name):
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    loss_fn = losskit.build(name, distributed="none")
    want = loss_fn(x.bfloat16().float(), y.bfloat16().float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss_fn(x.bfloat16(), y.bfloat16())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
