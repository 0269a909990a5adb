"""The contrastive losses against the real reference libraries (installed by the ``dev``
extra): ``clip`` vs ``open_clip.loss.ClipLoss``, ``siglip`` vs ``open_clip.loss.SigLipLoss``,
``infonce`` vs ``info_nce.InfoNCE``, values and gradients (features, temperature, bias)
in float64.

Mapping of the conventions:

- open_clip takes already L2-normalised features and ``logit_scale`` (not its log): it
  gets ``F.normalize(x)`` (the raw features when ``normalize=false``) and
  ``exp(log_logit_scale)`` (``1/temperature`` when fixed); ``logit_bias`` is passed as is.
- info_nce always L2-normalises and has a fixed float ``temperature``. Without
  ``negative_keys`` it uses the other positive keys as negatives (losskit's default
  ``in_batch_negatives=true``); with ``negative_keys`` (``"unpaired"`` ``[M, D]`` or
  ``"paired"`` ``[N, M, D]``) it uses *only* those, which is losskit's
  ``in_batch_negatives=false``. A learnable losskit temperature is passed to it as the
  tensor ``exp(-log_logit_scale)``, so its gradient can be compared too.

Documented deviations, asserted as relations: losskit's ``infonce`` with in-batch *and*
explicit negatives (which info_nce cannot do) equals info_nce's ``"paired"`` mode with the
other keys appended to each query's negatives; losskit clamps the logit scale inside
forward (open_clip's training loop clamps the parameter after the optimizer step), so
above ``max_logit_scale`` it equals open_clip at scale 100 with no gradient to the scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from info_nce import InfoNCE
from open_clip.loss import ClipLoss, SigLipLoss
from torch import Tensor

import losskit

TOL = dict(rtol=1e-10, atol=1e-12)
GRAD_TOL = dict(rtol=1e-8, atol=1e-10)


def _features(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)


def _copy(t: Tensor) -> Tensor:
    """A fresh float64 leaf with the value of ``t`` (for the reference's own graph)."""
    return t.detach().clone().double().requires_grad_()


def _assert_same(got: Tensor, want: Tensor, got_wrt: list[Tensor], want_wrt: list[Tensor], g: torch.Generator) -> None:
    """Values equal, and the gradients of a random weighting of them w.r.t. each pair of leaves."""
    torch.testing.assert_close(got, want, **TOL)
    w = torch.randn(got.shape, generator=g, dtype=torch.float64)
    got_g = torch.autograd.grad((got * w).sum(), got_wrt)
    want_g = torch.autograd.grad((want * w).sum(), want_wrt)
    for i, (a, b) in enumerate(zip(got_g, want_g)):
        torch.testing.assert_close(a, b, **GRAD_TOL, msg=lambda m, i=i: f"gradient w.r.t. leaf {i}: {m}")


class _Pair:
    """``clip``/``siglip`` inputs and the open_clip arguments that mirror a built loss."""

    def __init__(self, loss_fn: losskit.Loss, img: Tensor, txt: Tensor) -> None:
        cfg = loss_fn.config
        self.img, self.txt = _copy(img), _copy(txt)
        self.leaves = [self.img, self.txt]
        if loss_fn.log_logit_scale is not None:
            log_scale = _copy(loss_fn.log_logit_scale)
            self.leaves.append(log_scale)
            self.scale = log_scale.exp()
        else:
            self.scale = torch.tensor(1 / cfg.temperature, dtype=torch.float64)
        self.bias = None
        if loss_fn.logit_bias is not None:
            self.bias = _copy(loss_fn.logit_bias)
            self.leaves.append(self.bias)
        elif getattr(cfg, "logit_bias", None) is not None:
            self.bias = torch.tensor(cfg.logit_bias, dtype=torch.float64)
        norm = (lambda t: F.normalize(t, dim=-1)) if cfg.normalize else (lambda t: t)
        self.a, self.b = norm(self.img), norm(self.txt)


def _check_pair_loss(name: str, reference: torch.nn.Module, b: int, d: int, seed: int, **cfg: object) -> None:
    """``name`` (built from ``cfg``) against the open_clip module ``reference`` on random ``[b, d]`` pairs."""
    g = torch.Generator().manual_seed(seed)
    img, txt = _features(g, b, d), _features(g, b, d)
    loss_fn = losskit.build(name, distributed="none", **cfg).double()
    ref = _Pair(loss_fn, img, txt)
    want = reference(ref.a, ref.b, ref.scale, ref.bias)
    _assert_same(loss_fn(img, txt), want, [img, txt, *loss_fn.parameters()], ref.leaves, g)


@given(
    st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**16),
    st.sampled_from([0.07, 0.3, 1.0, 0.0125]), st.sampled_from([None, -0.5, 2.0]),
    st.booleans(), st.booleans(), st.booleans(), st.one_of(st.none(), st.integers(1, 7)),
)
def test_clip_equals_open_clip(b, d, seed, temperature, logit_bias, learnable_t, learnable_b, normalize, chunk):
    _check_pair_loss(
        "clip", ClipLoss(), b, d, seed, temperature=temperature, learnable_temperature=learnable_t,
        logit_bias=logit_bias, learnable_bias=learnable_b, normalize=normalize, chunk_size=chunk,
    )


@given(
    st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**16),
    st.sampled_from([0.1, 0.5, 0.02]), st.sampled_from([-10.0, 0.0, 3.0]),
    st.booleans(), st.booleans(), st.one_of(st.none(), st.integers(1, 7)),
)
def test_siglip_equals_open_clip(b, d, seed, temperature, logit_bias, learnable, normalize, chunk):
    _check_pair_loss(
        "siglip", SigLipLoss(), b, d, seed, temperature=temperature, logit_bias=logit_bias,
        learnable_temperature=learnable, learnable_bias=learnable, normalize=normalize, chunk_size=chunk,
    )


def _info_nce_temperature(loss_fn: losskit.Loss, leaves: list[Tensor]) -> Tensor | float:
    """info_nce's ``temperature`` for a built ``infonce``: a float, or ``exp(-log_logit_scale)``
    of a fresh leaf (appended to ``leaves``) when the temperature is learnable."""
    if loss_fn.log_logit_scale is None:
        return loss_fn.config.temperature
    log_scale = _copy(loss_fn.log_logit_scale)
    leaves.append(log_scale)
    return torch.exp(-log_scale)


@given(
    st.sampled_from([None, "unpaired", "paired"]), st.integers(1, 6), st.integers(1, 4), st.integers(1, 4),
    st.integers(0, 2**16), st.sampled_from([0.1, 0.5, 0.05]), st.sampled_from(["mean", "sum", "none"]),
    st.booleans(), st.one_of(st.none(), st.integers(1, 7)),
)
def test_infonce_equals_info_nce(mode, n, m, d, seed, temperature, reduction, learnable, chunk):
    g = torch.Generator().manual_seed(seed)
    q, k = _features(g, n, d), _features(g, n, d)
    negs = None if mode is None else _features(g, *((m, d) if mode == "unpaired" else (n, m, d)))
    loss_fn = losskit.build(
        "infonce", temperature=temperature, learnable_temperature=learnable, reduction=reduction,
        in_batch_negatives=mode is None, chunk_size=chunk if mode is None else None, distributed="none",
    ).double()
    inputs = [t for t in (q, k, negs) if t is not None]
    leaves = [_copy(t) for t in inputs]
    reference = InfoNCE(_info_nce_temperature(loss_fn, leaves), reduction=reduction, negative_mode=mode)
    want = reference(*leaves[: len(inputs)])
    _assert_same(loss_fn(*inputs), want, inputs + list(loss_fn.parameters()), leaves, g)


@given(st.sampled_from(["unpaired", "paired"]), st.integers(1, 5), st.integers(1, 3), st.integers(1, 4), st.integers(0, 2**16))
def test_infonce_in_batch_plus_explicit_negatives_is_info_nce_paired_with_the_other_keys(mode, n, m, d, seed):
    # documented deviation: losskit puts in-batch and explicit negatives in one denominator;
    # info_nce can only take one kind, so give each query the other keys + its explicit negatives
    g = torch.Generator().manual_seed(seed)
    q, k = _features(g, n, d), _features(g, n, d)
    negs = _features(g, *((m, d) if mode == "unpaired" else (n, m, d)))
    loss_fn = losskit.build("infonce", in_batch_negatives=True, distributed="none")
    rq, rk, rn = (_copy(t) for t in (q, k, negs))
    explicit = rn.expand(n, m, d) if mode == "unpaired" else rn
    per_query = torch.stack([torch.cat([rk[torch.arange(n) != i], explicit[i]]) for i in range(n)])  # [N, N-1+M, D]
    want = InfoNCE(negative_mode="paired")(rq, rk, per_query)
    _assert_same(loss_fn(q, k, negs), want, [q, k, negs], [rq, rk, rn], g)


def test_clip_clamps_the_scale_in_forward_where_open_clip_clamps_the_parameter():
    # documented deviation: open_clip's training loop clamps logit_scale to ln(100) after the
    # optimizer step; losskit clamps exp(log_logit_scale) to max_logit_scale inside forward
    g = torch.Generator().manual_seed(3)
    img, txt = _features(g, 6, 4), _features(g, 6, 4)
    loss_fn = losskit.build("clip", distributed="none").double()
    with torch.no_grad():
        loss_fn.log_logit_scale.fill_(math.log(400.0))
    got = loss_fn(img, txt)
    want = ClipLoss()(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), torch.tensor(100.0, dtype=torch.float64))
    torch.testing.assert_close(got, want, **TOL)
    got.backward()
    assert loss_fn.log_logit_scale.grad.item() == 0.0
