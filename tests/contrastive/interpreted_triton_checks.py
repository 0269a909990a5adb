"""The fused Triton kernels of clip / siglip / infonce on CPU tensors under Triton's interpreter.

Not collected by the main run: ``test_contrastive_triton.py`` runs this module in a
subprocess with ``TRITON_INTERPRET=1`` set before anything imports Triton. Block sizes
under the interpreter are 16 x 16 x 16, so the batches (up to 40) and feature dims (up to
20) here have several and ragged row, column and feature blocks.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import losskit
from losskit_plugins.contrastive.engine import EngineOptions, pairwise_loss
from losskit_plugins.contrastive.pairs import Pairs

assert os.environ.get("TRITON_INTERPRET") == "1", "run through test_contrastive_triton.py"


@st.composite
def loss_cases(draw):
    name = draw(st.sampled_from(["clip", "siglip", "infonce"]))
    b = draw(st.integers(1, 40))
    cfg = {
        "kernel": "triton",
        "distributed": "none",
        "normalize": draw(st.booleans()),
        "reduction": draw(st.sampled_from(["mean", "sum", "none"])),
        "learnable_temperature": True,
        "temperature": draw(st.sampled_from([0.05, 0.5])),
    }
    if name != "siglip":
        cfg["label_smoothing"] = draw(st.sampled_from([0.0, 0.1]))
    if name == "clip":
        cfg["direction"] = draw(st.sampled_from(["both", "image_to_text", "text_to_image"]))
        cfg["logit_bias"] = draw(st.sampled_from([None, 0.5]))
    if name == "infonce":
        cfg["symmetric"] = draw(st.booleans())
    groups = draw(st.one_of(st.none(), st.lists(st.integers(0, max(1, b // 3)), min_size=b, max_size=b)))
    negatives = name == "infonce" and draw(st.booleans())
    return name, b, draw(st.integers(1, 20)), cfg, groups, negatives, draw(st.integers(0, 2**16))


def reference(ref, name, cfg, img, txt, negs, groups, scale, bias):
    """Float64 brute force of the three losses (the papers' formulas, row by row)."""
    a, b = (ref.normalize(img), ref.normalize(txt)) if cfg["normalize"] else (img, txt)
    S = scale * a @ b.T + (bias if bias is not None else 0.0)  # [B, B]
    n = img.shape[0]
    pos = ref.positives_from(n, n, groups, groups)
    if name == "siglip":
        return ref.reduce(ref.sigmoid_rows(S, pos), cfg["reduction"])
    eps = cfg["label_smoothing"]
    if name == "clip":
        i2t = ref.softmax_rows(S, pos, eps=eps)
        t2i = ref.softmax_rows(S.T, ref.transpose(pos), eps=eps)
        per = {"both": (i2t + t2i) / 2, "image_to_text": i2t, "text_to_image": t2i}[cfg["direction"]]
        return ref.reduce(per, cfg["reduction"])
    neg = [[not v for v in row] for row in pos]
    S_all, pos_all, neg_all = S, pos, neg
    if negs is not None:
        e = ref.normalize(negs) if cfg["normalize"] else negs
        S_all = torch.cat([S, scale * a @ e.T], 1)
        pos_all = [row + [False] * e.shape[0] for row in pos]
        neg_all = [row + [True] * e.shape[0] for row in neg]
    per = ref.softmax_rows(S_all, pos_all, neg_all, eps=eps)
    if cfg["symmetric"]:
        per = (per + ref.softmax_rows(S.T, ref.transpose(pos), eps=eps)) / 2
    has = sum(any(row) for row in pos)
    return ref.reduce(per, cfg["reduction"], normalizer=max(has, 1))


def _call(loss_fn, inputs, groups):
    if len(inputs) == 3:
        return loss_fn(inputs[0], inputs[1], inputs[2], group_ids=groups)
    return loss_fn(*inputs, group_ids=groups)


def _grads(name, cfg, inputs, groups, w, dtype, **over):
    loss_fn = losskit.build(name, **{**cfg, **over})
    leaves = [t.detach().to(dtype).requires_grad_() for t in inputs]
    out = _call(loss_fn, leaves, groups)
    grads = torch.autograd.grad((out * w.to(out.dtype)).sum(), leaves + list(loss_fn.parameters()))
    return [out.detach().double()] + [g.double() for g in grads]


def _close(got, want, tol):
    for g, w in zip(got, want):
        g, w = g.detach(), w.detach()
        err = float((g - w).norm() / w.norm().clamp_min(1e-6))
        assert err <= tol or float((g - w).abs().max()) <= tol, (err, g, w)


@settings(max_examples=8)
@given(loss_cases())
def test_fused_loss_matches_float64_bruteforce_and_the_torch_tiled_path(ref, case):
    name, b, d, cfg, groups, negatives, seed = case
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(b, d, generator=g, dtype=torch.float64) for _ in range(2)]
    if negatives:
        inputs.append(torch.randn(5, d, generator=g, dtype=torch.float64))
    gid = None if groups is None else torch.tensor(groups)
    w = torch.rand(b if cfg["reduction"] == "none" else (), generator=g, dtype=torch.float64) + 0.5
    got = _grads(name, cfg, inputs, gid, w, torch.float32)
    # float64 reference with its own leaves (the parameters start from their float32 values)
    leaves = [t.clone().requires_grad_() for t in inputs]
    log_scale = torch.tensor(math.log(1 / cfg["temperature"]), dtype=torch.float32).double().requires_grad_()
    bias_init = {"clip": cfg.get("logit_bias"), "siglip": -10.0}.get(name)
    bias = None if bias_init is None else torch.tensor(bias_init, dtype=torch.float32).double().requires_grad_()
    want = reference(ref, name, cfg, leaves[0], leaves[1], leaves[2] if negatives else None, groups,
                     log_scale.exp().clamp(max=100.0), bias)
    params = [log_scale] + ([bias] if bias is not None else [])
    want_all = [want.detach()] + list(torch.autograd.grad((want * w).sum(), leaves + params))
    _close(got, want_all, 2e-4)
    _close(got, _grads(name, cfg, inputs, gid, w, torch.float32, kernel="torch", chunk_size=7), 2e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_half_operands_accumulate_in_float32(ref, name, dtype):
    # the half features are the kernels' operands as they are: logits are exact products summed in
    # fp32, so the value matches float64 on the same (rounded) inputs to fp32 accuracy; the gradient
    # matmuls take dL/ds rounded to the half dtype (as flash-attention does), and return half gradients
    g = torch.Generator().manual_seed(3)
    inputs = [torch.randn(37, 20, generator=g).to(dtype).double() for _ in range(2)]
    groups = torch.randint(0, 12, (37,), generator=g)
    cfg = {"kernel": "triton", "distributed": "none", "reduction": "sum", "temperature": 0.07}
    if name == "clip":
        cfg["label_smoothing"] = 0.1
    w = torch.tensor(1.0, dtype=torch.float64)
    got = _grads(name, cfg, inputs, groups, w, dtype)
    exact = _grads(name, cfg, inputs, groups, w, torch.float64, kernel="torch")
    torch.testing.assert_close(got[0], exact[0], rtol=2e-6, atol=1e-5)
    _close(got[1:], exact[1:], 1e-2)
    assert all(t.dtype == dtype for t in _grads_dtypes(name, cfg, inputs, groups, dtype))


def _grads_dtypes(name, cfg, inputs, groups, dtype):
    leaves = [t.detach().to(dtype).requires_grad_() for t in inputs]
    losskit.build(name, **cfg)(*leaves, group_ids=groups).backward()
    return [t.grad for t in leaves]


@pytest.mark.parametrize(
    "pairs",
    [
        Pairs.diagonal(12, 36, offset=12),  # local_loss layout: rank 1 of 3, positives at i + 12
        Pairs.from_groups(torch.arange(12) % 5, torch.arange(36) % 7),  # global group ids, non-square
        Pairs.from_mask(torch.rand(12, 36, generator=torch.Generator().manual_seed(1)) < 0.1),  # rows without positives
    ],
    ids=["offset", "groups", "mask"],
)
@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_engine_on_distributed_layouts_matches_the_torch_engine(pairs, kind):
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(12, 20, generator=g, dtype=torch.float64), torch.randn(36, 20, generator=g, dtype=torch.float64)
    scale, bias = torch.tensor(7.0, dtype=torch.float64), torch.tensor(-1.5, dtype=torch.float64)
    cols = kind == "softmax" and not pairs.single
    results = []
    for kernel, dtype in (("triton", torch.float32), ("torch", torch.float64)):
        o = EngineOptions(kind, pairs, cols=cols, label_smoothing=0.1 if kind == "softmax" else 0.0,
                          normalize=True, metrics=True, kernel=kernel)
        leaves = [t.to(dtype).requires_grad_() for t in (x, y, scale, bias)]
        r = pairwise_loss(*leaves, o)
        w = torch.linspace(0.5, 1.5, 12, dtype=dtype)
        total = (r.row_loss * w).sum() + r.col_loss.sum() * 0.7
        grads = torch.autograd.grad(total, leaves)
        results.append([r.row_loss, r.col_loss, *grads, r.positive_sum, r.positive_count, r.row_argmax, r.col_argmax])
    got, want = results
    _close([t.double() for t in got[:8]], [t.detach().double() for t in want[:8]], 2e-5)
    assert torch.equal(got[8], want[8]) and torch.equal(got[9], want[9])


def test_siglip_negative_only_matches_the_torch_path():
    g = torch.Generator().manual_seed(6)
    inputs = [torch.randn(21, 18, generator=g) for _ in range(2)]
    out = []
    for kernel in ("triton", "torch"):
        loss_fn = losskit.build("siglip", kernel=kernel, distributed="none")
        leaves = [t.clone().requires_grad_() for t in inputs]
        value = loss_fn(*leaves, negative_only=True)
        out.append([value, *torch.autograd.grad(value, leaves + list(loss_fn.parameters()))])
    _close(out[0], out[1], 2e-5)


def test_metrics_match_the_torch_path():
    g = torch.Generator().manual_seed(4)
    img, txt = torch.randn(33, 8, generator=g), torch.randn(33, 8, generator=g)
    gid = torch.randint(0, 9, (33,), generator=g)
    for name in ("clip", "siglip"):
        fused = losskit.build(name, kernel="triton", distributed="none").compute(img, txt, group_ids=gid)
        torch_ = losskit.build(name, kernel="torch", distributed="none").compute(img, txt, group_ids=gid)
        assert fused.metrics.keys() == torch_.metrics.keys()
        for key, value in torch_.metrics.items():
            torch.testing.assert_close(fused.metrics[key], value, rtol=1e-5, atol=1e-5)


def test_unfused_options_and_float64_run_the_torch_path():
    g = torch.Generator().manual_seed(5)
    img, txt = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randn(9, 4, generator=g, dtype=torch.float64)
    for cfg in ({}, {"hard_negative_beta": 0.5}):
        fused = losskit.build("clip", kernel="triton", distributed="none", **cfg).double()(img, txt)
        plain = losskit.build("clip", kernel="torch", distributed="none", **cfg).double()(img, txt)
        assert torch.equal(fused, plain)  # bit for bit: the same PyTorch code ran
    half = img.to(torch.bfloat16), txt.to(torch.bfloat16)
    a = losskit.build("clip", kernel="triton", hard_negative_beta=0.5, distributed="none")(*half)
    b = losskit.build("clip", kernel="torch", hard_negative_beta=0.5, distributed="none")(*half)
    assert torch.equal(a, b)
