"""``compute(...).metrics`` of ``clip``, ``siglip`` and ``infonce`` against a float64
brute force over the logit matrix, on the dense and the tiled path (they must agree):
top-1 accuracy of each direction (a hit is any positive; for ``infonce`` an explicit
negative that wins is a miss), mean positive / negative in-batch logit, logit scale,
temperature and bias."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losskit

NAMES = {"clip": ("i2t", "t2i"), "siglip": ("i2t", "t2i"), "infonce": ("q2k", "k2q")}


def _accuracy(S: torch.Tensor, pos: torch.Tensor, extra: torch.Tensor | None = None) -> float:
    """Share of rows with a positive whose best column (explicit negatives ``extra`` included) is a positive."""
    best = S.argmax(1)
    hit = pos[torch.arange(S.shape[0]), best]
    if extra is not None:
        hit &= S.max(1).values > extra.max(1).values
    has = pos.any(1)
    return float(hit[has].double().mean())


def _expected(name, cfg, img, txt, negs, pos, scale, bias):
    a, b = torch.nn.functional.normalize(img, dim=-1), torch.nn.functional.normalize(txt, dim=-1)
    S = scale * a @ b.T + (bias if bias is not None else 0.0)  # [B, B]
    extra = None if negs is None else scale * a @ torch.nn.functional.normalize(negs, dim=-1).T
    fwd, bwd = NAMES[name]
    want = {
        f"accuracy_{fwd}": _accuracy(S, pos, extra),
        "positive_logit": float(S[pos].mean()),
        "negative_logit": float(S[~pos].mean()) if (~pos).any() else 0.0,
        "logit_scale": scale,
        "temperature": 1 / scale,
    }
    if name != "infonce" or cfg.get("symmetric"):
        want[f"accuracy_{bwd}"] = _accuracy(S.T, pos.T)
    if bias is not None:
        want["logit_bias"] = bias
    return want


@given(
    st.sampled_from(sorted(NAMES)), st.integers(1, 9), st.integers(2, 6), st.integers(0, 2**16),
    st.booleans(), st.booleans(), st.one_of(st.none(), st.integers(1, 4)),
)
def test_metrics_match_bruteforce_on_dense_and_tiled_paths(name, b, d, seed, grouped, with_extras, chunk):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(b, d, generator=g, dtype=torch.float64)
    txt = img + torch.randn(b, d, generator=g, dtype=torch.float64)
    gid = torch.randint(0, max(1, b // 2), (b,), generator=g) if grouped else None
    pos = torch.eye(b, dtype=torch.bool) if gid is None else gid[:, None] == gid[None, :]
    cfg = {"chunk_size": chunk, "distributed": "none", "learnable_temperature": False, "temperature": 0.25}
    negs, bias = None, None
    if name == "clip" and with_extras:
        cfg["logit_bias"], bias = 0.5, 0.5
    if name == "siglip":
        cfg["logit_bias"], bias = (-3.0 if with_extras else 0.0), (-3.0 if with_extras else 0.0)
    if name == "infonce":
        cfg["symmetric"] = grouped
        negs = torch.randn(3, d, generator=g, dtype=torch.float64) if with_extras else None
    loss_fn = losskit.build(name, **cfg).double()
    args = (img, txt) if negs is None else (img, txt, negs)
    got = loss_fn.compute(*args, group_ids=gid).metrics
    want = _expected(name, cfg, img, txt, negs, pos, 4.0, bias)
    assert set(got) == set(want)
    for key, value in want.items():
        tol = 1e-7 if key.startswith("accuracy") else 1e-12  # accuracies are float32
        assert float(got[key]) == pytest.approx(value, rel=1e-9, abs=tol), key
    dense = losskit.build(name, **{**cfg, "chunk_size": None}).double().compute(*args, group_ids=gid).metrics
    for key in want:
        torch.testing.assert_close(got[key].double(), dense[key].double(), rtol=1e-12, atol=1e-12, msg=key)
