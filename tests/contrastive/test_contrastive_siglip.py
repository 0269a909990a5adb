"""siglip: values and gradients against the brute-force reference and open_clip's formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import losskit


@given(
    st.integers(1, 7), st.integers(1, 5), st.integers(0, 2**16), st.booleans(), st.booleans(),
    st.sampled_from(["mean", "sum", "none"]), st.one_of(st.none(), st.integers(1, 8)),
)
def test_siglip_matches_bruteforce_value_and_gradients(ref, b, d, seed, grouped, learnable, reduction, chunk):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(b, d, generator=g, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(b, d, generator=g, dtype=torch.float64, requires_grad=True)
    gid = torch.randint(0, 3, (b,), generator=g) if grouped else None
    cfg = dict(learnable_temperature=learnable, learnable_bias=learnable, reduction=reduction, chunk_size=chunk, distributed="none")
    loss_fn = losskit.build("siglip", **cfg).double()
    out = loss_fn(img, txt, group_ids=gid)
    img2, txt2 = img.detach().clone().requires_grad_(), txt.detach().clone().requires_grad_()
    log_scale = torch.tensor(math.log(10.0), dtype=torch.float32).double().requires_grad_()
    bias = torch.tensor(-10.0, dtype=torch.float64, requires_grad=learnable)
    scale = log_scale.exp() if learnable else torch.tensor(10.0, dtype=torch.float64)
    S = scale * ref.normalize(img2) @ ref.normalize(txt2).T + bias
    pos = ref.positives_from(b, b, None if gid is None else gid.tolist(), None if gid is None else gid.tolist())
    per = ref.sigmoid_rows(S, pos)
    want = ref.reduce(per, reduction)  # mean = sum / B (SigLIP)
    torch.testing.assert_close(out, want, rtol=1e-9, atol=1e-10)
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad((out * w).sum(), [img, txt] + list(loss_fn.parameters()))
    exp = torch.autograd.grad((want * w).sum(), [img2, txt2] + ([log_scale, bias] if learnable else []))
    for a, e in zip(got, exp):
        torch.testing.assert_close(a, e, rtol=1e-8, atol=1e-9)


def test_siglip_equals_open_clip_formula():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    a, b = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = 10.0 * a @ b.T - 10.0
    labels = 2 * torch.eye(16) - 1
    want = -F.logsigmoid(labels * logits).sum() / 16
    loss_fn = losskit.build("siglip", distributed="none")
    torch.testing.assert_close(loss_fn(img, txt), want, rtol=1e-5, atol=1e-5)
    assert loss_fn.learnable_fields() == {"temperature": "log_logit_scale", "logit_bias": "logit_bias"}
    # group ids: +1 for every same-group pair
    gid = torch.tensor([0, 0, 1, 2] * 4)
    labels = 2 * (gid[:, None] == gid[None, :]).float() - 1
    torch.testing.assert_close(loss_fn(img, txt, group_ids=gid), -F.logsigmoid(labels * logits).sum() / 16, rtol=1e-5, atol=1e-5)


def test_siglip_batch_of_one_and_metrics():
    img = torch.randn(1, 4)
    out = losskit.build("siglip", distributed="none").compute(img, img)
    torch.testing.assert_close(out.loss, -F.logsigmoid(torch.tensor(0.0)))  # 10 * 1 - 10
    assert out.metrics["logit_bias"].item() == -10.0 and out.metrics["logit_scale"].item() == pytest.approx(10.0)
    assert out.metrics["accuracy_i2t"].item() == 1.0


def test_siglip_conformance_and_bad_input():
    from losskit.testing import check_loss

    check_loss("siglip")
    check_loss("siglip", config={"chunk_size": 2, "learnable_bias": False})
    with pytest.raises(ValueError, match="text_features"):
        losskit.build("siglip")(torch.randn(3, 2), torch.randn(4, 2))
