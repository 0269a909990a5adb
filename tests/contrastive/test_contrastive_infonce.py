"""infonce: values and gradients against the brute-force reference (explicit negatives of
both shapes, masks, groups, symmetric, hard negatives, debiasing), info-nce-pytorch's
formula, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import losskit


@st.composite
def infonce_cases(draw):
    n = draw(st.integers(1, 6))
    d = draw(st.integers(1, 4))
    m = draw(st.integers(1, 4))
    negatives = draw(st.sampled_from([None, "shared", "paired"]))
    positives = draw(st.sampled_from(["diagonal", "groups", "mask"]))
    cfg = {
        "in_batch_negatives": draw(st.booleans()) if negatives else True,
        "symmetric": draw(st.booleans()),
        "label_smoothing": draw(st.sampled_from([0.0, 0.1])),
        "hard_negative_beta": draw(st.sampled_from([0.0, 0.0, 0.7])),
        "debias_tau_plus": draw(st.sampled_from([0.0, 0.0, 0.1])),
        "temperature": draw(st.sampled_from([0.1, 0.5])),
        "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
        "distributed": "none",
    }
    if cfg["hard_negative_beta"] == 0 and cfg["debias_tau_plus"] == 0 and cfg["in_batch_negatives"] and negatives != "paired":
        cfg["chunk_size"] = draw(st.one_of(st.none(), st.integers(1, n + 1)))
    return n, d, m, negatives, positives, cfg, draw(st.integers(0, 2**16))


def reference_infonce(ref, q, k, negs, pos, cfg):
    n = q.shape[0]
    qn, kn = ref.normalize(q), ref.normalize(k)
    t = 1 / cfg["temperature"]
    S = t * qn @ kn.T  # [N, N]
    neg_in = [[(not pos[i][j]) and cfg["in_batch_negatives"] for j in range(n)] for i in range(n)]
    kw = dict(eps=cfg["label_smoothing"], beta=cfg["hard_negative_beta"], tau=cfg["debias_tau_plus"], floor=-t)
    rows = []
    for i in range(n):
        s_row, p_row, n_row = S[i], list(pos[i]), list(neg_in[i])
        if negs is not None:
            nn_ = ref.normalize(negs if negs.dim() == 2 else negs[i])
            s_row = torch.cat([s_row, t * nn_ @ qn[i]])
            p_row += [False] * nn_.shape[0]
            n_row += [True] * nn_.shape[0]
        rows.append(ref.softmax_row(s_row, p_row, n_row, **kw))
    per = torch.stack(rows)
    if cfg["symmetric"]:
        per = (per + ref.softmax_rows(S.T, ref.transpose(pos), ref.transpose(neg_in), **kw)) / 2
    has = sum(any(r) for r in pos)
    return ref.reduce(per, cfg["reduction"], normalizer=max(has, 1))


@given(infonce_cases())
def test_infonce_matches_bruteforce_value_and_gradients(ref, case):
    n, d, m, negatives, positives, cfg, seed = case
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    negs = None
    if negatives is not None:
        shape = (m, d) if negatives == "shared" else (n, m, d)
        negs = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    kwargs, pos = {}, ref.positives_from(n, n)
    if positives == "groups":
        gid = torch.randint(0, 3, (n,), generator=g)
        kwargs["group_ids"], pos = gid, ref.positives_from(n, n, gid.tolist(), gid.tolist())
    elif positives == "mask":
        mask = torch.rand(n, n, generator=g) < 0.4
        kwargs["positive_mask"], pos = mask, ref.positives_from(n, n, mask=mask.tolist())
    loss_fn = losskit.build("infonce", **cfg)
    out = loss_fn(q, k, negs, **kwargs)
    leaves = [t for t in (q, k, negs) if t is not None]
    copies = [t.detach().clone().requires_grad_() for t in leaves]
    want = reference_infonce(ref, copies[0], copies[1], copies[2] if negs is not None else None, pos, cfg)
    torch.testing.assert_close(out, want, rtol=1e-9, atol=1e-10)
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    got_g = torch.autograd.grad((out * w).sum(), leaves, allow_unused=True)
    want_g = torch.autograd.grad((want * w).sum(), copies, allow_unused=True)
    for gg, wg in zip(got_g, want_g):
        z = gg if gg is not None else wg
        torch.testing.assert_close(
            gg if gg is not None else torch.zeros_like(z), wg if wg is not None else torch.zeros_like(z), rtol=1e-7, atol=1e-9
        )


def _info_nce_pytorch(query, positive_key, negative_keys=None, temperature=0.1, negative_mode="unpaired"):
    # the formula of info-nce-pytorch 0.1.4 (info_nce.info_nce)
    query, positive_key = F.normalize(query, dim=-1), F.normalize(positive_key, dim=-1)
    if negative_keys is not None:
        negative_keys = F.normalize(negative_keys, dim=-1)
        positive_logit = torch.sum(query * positive_key, dim=1, keepdim=True)
        if negative_mode == "unpaired":
            negative_logits = query @ negative_keys.transpose(-2, -1)
        else:
            negative_logits = (query.unsqueeze(1) @ negative_keys.transpose(-2, -1)).squeeze(1)
        logits = torch.cat([positive_logit, negative_logits], dim=1)
        labels = torch.zeros(len(logits), dtype=torch.long)
    else:
        logits = query @ positive_key.T
        labels = torch.arange(len(query))
    return F.cross_entropy(logits / temperature, labels)


@pytest.mark.parametrize("mode", ["unpaired", "paired", None])
def test_infonce_equals_info_nce_pytorch(mode):
    g = torch.Generator().manual_seed(4)
    q, k = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    negs = None if mode is None else torch.randn(*((7, 6) if mode == "unpaired" else (10, 7, 6)), generator=g)
    loss_fn = losskit.build("infonce", in_batch_negatives=mode is None, distributed="none")
    torch.testing.assert_close(loss_fn(q, k, negs), _info_nce_pytorch(q, k, negs, negative_mode=mode or "unpaired"), rtol=1e-5, atol=1e-6)


def test_infonce_in_batch_and_explicit_negatives_share_one_denominator():
    g = torch.Generator().manual_seed(5)
    q, k, negs = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g), torch.randn(3, 4, generator=g)
    loss_fn = losskit.build("infonce", distributed="none")
    qn, kn, nn_ = (F.normalize(t, dim=-1) for t in (q, k, negs))
    logits = torch.cat([qn @ kn.T, qn @ nn_.T], 1) / 0.1  # [N, N + M]
    torch.testing.assert_close(loss_fn(q, k, negs), F.cross_entropy(logits, torch.arange(6)), rtol=1e-5, atol=1e-6)


def test_infonce_rows_without_positive_or_negative_are_defined():
    q, k = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 0] = True
    mask[1, :] = True  # row 1: every key positive, no negative
    loss_fn = losskit.build("infonce", reduction="none", distributed="none")
    out = loss_fn(q, k, positive_mask=mask)
    assert out[1].item() == 0.0 and out[2].item() == 0.0 and out[3].item() == 0.0
    assert out[0].item() > 0
    mean = losskit.build("infonce", distributed="none")(q, k, positive_mask=mask)
    torch.testing.assert_close(mean, out.sum() / 2)  # rows 0 and 1 have positives
    mean.backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    empty = losskit.build("infonce", distributed="none")(q, k, positive_mask=torch.zeros(4, 4, dtype=torch.bool))
    assert empty.item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("opts", [{"hard_negative_beta": 1.0}, {"debias_tau_plus": 0.1}, {"hard_negative_beta": 2.0, "debias_tau_plus": 0.2}])
def test_hard_negatives_finite_at_scale_100(opts, dtype):
    g = torch.Generator().manual_seed(6)
    q = torch.randn(32, 16, generator=g)
    k = q + 0.05 * torch.randn(32, 16, generator=g)
    for name in ("infonce", "clip"):
        loss_fn = losskit.build(name, temperature=0.01, learnable_temperature=False, distributed="none", **opts)
        x, y = q.to(dtype).requires_grad_(), k.to(dtype).requires_grad_()
        out = loss_fn(x, y)
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
        want = loss_fn(x.detach().double(), y.detach().double())
        torch.testing.assert_close(out.double(), want, rtol=1e-3, atol=1e-4)


def test_infonce_metrics_and_fixed_temperature():
    q = torch.eye(3)
    loss_fn = losskit.build("infonce", symmetric=True, distributed="none")
    assert loss_fn.learnable_fields() == {}
    out = loss_fn.compute(q, q)
    assert out.metrics["accuracy_q2k"].item() == 1.0 and out.metrics["accuracy_k2q"].item() == 1.0
    assert out.metrics["temperature"].item() == pytest.approx(0.1)
    assert set(out.parts) == {"query_to_key", "key_to_query"}
    loss_fn.config.temperature = 1.0
    torch.testing.assert_close(loss_fn(q, q), torch.tensor(math.log(math.e + 2) - 1.0))
    learn = losskit.build("infonce", learnable_temperature=True)
    assert learn.learnable_fields() == {"temperature": "log_logit_scale"}


def test_infonce_conformance():
    from losskit.testing import check_loss

    check_loss("infonce", config={"symmetric": True, "chunk_size": 2, "label_smoothing": 0.1})
    check_loss("infonce", config={"hard_negative_beta": 0.5, "debias_tau_plus": 0.1, "learnable_temperature": True})


BAD = [
    ({"negative_keys": torch.randn(3)}, ValueError, "negative_keys"),
    ({"negative_keys": torch.randn(3, 5)}, ValueError, "negative_keys"),
    ({"negative_keys": torch.randn(2, 3, 4)}, ValueError, "negative_keys"),
    ({"negative_keys": torch.randn(4, 3, 5, 4)}, ValueError, "negative_keys"),
    ({"negative_keys": torch.ones(3, 4, dtype=torch.long)}, TypeError, "negative_keys"),
    ({"positive_mask": torch.ones(4, 3, dtype=torch.bool)}, ValueError, "positive_mask"),
    ({"positive_mask": torch.ones(4, 4)}, TypeError, "positive_mask"),
    ({"positive_mask": torch.ones(4, 4, dtype=torch.bool), "group_ids": torch.zeros(4, dtype=torch.long)}, ValueError, "at most one"),
    ({"group_ids": torch.zeros(5, dtype=torch.long)}, ValueError, "group_ids"),
]


@pytest.mark.parametrize("kwargs, exc, text", BAD)
def test_infonce_bad_input(kwargs, exc, text):
    q, k = torch.randn(4, 4), torch.randn(4, 4)
    negs = kwargs.pop("negative_keys", None)
    with pytest.raises(exc, match=text):
        losskit.build("infonce", distributed="none")(q, k, negs, **kwargs)


def test_infonce_bad_config():
    with pytest.raises(losskit.errors.ConfigError, match="temperature"):
        losskit.build("infonce", temperature=0)
    with pytest.raises(losskit.errors.ConfigError, match="in_batch_negatives"):
        losskit.build("infonce", chunk_size=8, in_batch_negatives=False)
    with pytest.raises(ValueError, match="chunk_size"):
        losskit.build("infonce", chunk_size=2, distributed="none")(torch.randn(3, 2), torch.randn(3, 2), torch.randn(3, 2, 2))


def test_infonce_without_any_negatives_is_refused():
    # in_batch_negatives=false and no negative_keys: every row would be 0 (nothing to contrast)
    loss_fn = losskit.build("infonce", in_batch_negatives=False, distributed="none")
    with pytest.raises(ValueError, match="negative_keys: required with in_batch_negatives=false"):
        loss_fn(torch.randn(4, 3), torch.randn(4, 3))
    assert loss_fn(torch.randn(4, 3), torch.randn(4, 3), torch.randn(0, 3)).item() == 0.0  # empty negatives: defined, 0


@pytest.mark.parametrize("opts", [{"hard_negative_beta": 2.0}, {"debias_tau_plus": 0.2}, {"hard_negative_beta": 1.0, "debias_tau_plus": 0.1}])
def test_hard_negatives_at_scale_100_match_bruteforce_with_groups_and_negatives(ref, opts):
    # scale 100 (temperature 0.01): e^{(1+beta) s} reaches e^{300}, finite in the float64 reference;
    # fp16 inputs must give the float64 value of the same (rounded) inputs
    g = torch.Generator().manual_seed(8)
    q = torch.randn(12, 6, generator=g).half().double()
    k = (q + 0.1 * torch.randn(12, 6, generator=g, dtype=torch.float64)).half().double()
    negs = torch.randn(12, 3, 6, generator=g).half().double()
    gid = torch.randint(0, 8, (12,), generator=g)
    cfg = {"temperature": 0.01, "hard_negative_beta": 0.0, "debias_tau_plus": 0.0, "label_smoothing": 0.0,
           "in_batch_negatives": True, "symmetric": True, "reduction": "mean", **opts}
    loss_fn = losskit.build("infonce", distributed="none", **cfg)
    leaves = [t.clone().requires_grad_() for t in (q, k, negs)]
    got = loss_fn(*leaves, group_ids=gid)
    copies = [t.clone().requires_grad_() for t in (q, k, negs)]
    want = reference_infonce(ref, *copies, ref.positives_from(12, 12, gid.tolist(), gid.tolist()), cfg)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    for a, b in zip(torch.autograd.grad(got, leaves), torch.autograd.grad(want, copies)):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    half = [t.half().requires_grad_() for t in (q, k, negs)]
    low = loss_fn(*half, group_ids=gid)
    low.backward()
    assert low.dtype == torch.float32 and all(torch.isfinite(t.grad).all() for t in half)
    torch.testing.assert_close(low.double(), want.detach(), rtol=1e-4, atol=1e-4)
