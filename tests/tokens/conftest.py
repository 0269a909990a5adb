"""Brute-force token cross-entropy reference (float64, a Python loop over rows) and case drawing.

Shared by the ``token_ce`` and ``linear_token_ce`` tests through session fixtures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch
from hypothesis import strategies as st

IGNORE = -100


def _shift(t: torch.Tensor, fill: float) -> torch.Tensor:
    """Position t takes the value of position t + 1; the last takes ``fill`` (written out by hand)."""
    out = torch.full_like(t, fill)
    out[..., :-1] = t[..., 1:]
    return out


def reference_token_ce(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    shift: bool,
    ignore_index: int = IGNORE,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    reduction: str = "mean",
    num_items_in_batch: int | None = None,
    weights: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
    softcap: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(loss, ce_part, z_part)`` computed row by row in float64.

    Cross-entropy with class weights and label smoothing as ``torch.nn.functional.cross_entropy``
    defines them (on Gemma 2's capped logits ``softcap * tanh(x / softcap)`` when given),
    z-loss = coefficient * (log Z)^2 per supervised token; ``mean`` divides sums by
    ``num_items_in_batch``, else the sum of the targets' class weights, else the supervised
    count (at least 1).
    """
    x = logits.double()
    if softcap is not None:
        x = softcap * torch.tanh(x / softcap)
    cw = [1.0] * x.shape[-1] if class_weights is None else class_weights.double().tolist()
    if shift:
        labels = _shift(labels, ignore_index)
        weights = None if weights is None else _shift(weights, 0.0)
    v = x.shape[-1]
    rows = x.reshape(-1, v)
    flat = labels.reshape(-1).tolist()
    w = [1.0] * len(flat) if weights is None else weights.double().reshape(-1)
    ce_rows, z_rows = [], []
    for i, y in enumerate(flat):
        if y == ignore_index:
            zero = rows[i].nan_to_num(neginf=0.0).sum() * 0.0  # attached; -inf (masked) logits allowed
            ce_rows.append(zero)
            z_rows.append(zero)
            continue
        top = max(rows[i].tolist())
        lse = top + torch.log(sum(torch.exp(rows[i][j] - top) for j in range(v)))
        nll = cw[y] * (lse - rows[i][y])
        ce = nll
        if label_smoothing > 0:  # (skipped at 0: over a masked class it is infinite)
            smooth = sum(cw[j] * (lse - rows[i][j]) for j in range(v)) / v
            ce = (1 - label_smoothing) * nll + label_smoothing * smooth
        ce_rows.append(w[i] * ce)
        z_rows.append(w[i] * z_loss * lse**2)
    ce, z = torch.stack(ce_rows), torch.stack(z_rows)
    if reduction == "none":
        ce, z = ce.reshape(labels.shape), z.reshape(labels.shape)
    else:
        ce, z = ce.sum(), z.sum()
        if reduction == "mean":
            count = sum(1 for y in flat if y != ignore_index)
            if class_weights is not None:  # 1 when 0: an all-ignored batch gives 0, not F.cross_entropy's NaN
                count = sum(cw[y] for y in flat if y != ignore_index)
            norm = num_items_in_batch if num_items_in_batch is not None else (count or 1)
            ce, z = ce / norm, z / norm
    return ce + z, ce, z


@dataclass
class Case:
    """One drawn token-CE problem: shapes, labels, config fields and call keywords."""

    b: int
    t: int
    v: int
    three_d: bool
    labels: torch.Tensor
    weights: torch.Tensor | None
    config: dict = field(default_factory=dict)
    class_weights: torch.Tensor | None = None

    @property
    def rows_shape(self) -> tuple[int, ...]:
        return (self.b, self.t) if self.three_d else (self.b * self.t,)

    def shift(self) -> bool:
        shift = self.config.get("shift")
        return self.three_d if shift is None else shift

    def reference_kwargs(self) -> dict:
        kw = {k: v for k, v in self.config.items() if k not in ("shift", "chunk_size", "kernel", "in_place")}
        return {"shift": self.shift(), "weights": self.weights, "class_weights": self.class_weights, **kw}

    def call_kwargs(self) -> dict:
        """Keywords of the loss call besides the tensors' gradients (per-class weights)."""
        return {} if self.class_weights is None else {"class_weights": self.class_weights}


def draw_case(data: st.DataObject, *, max_v: int = 9, parity: bool = False) -> Case:
    """Draw shapes, an ignore pattern (none / some / all ignored), smoothing, z-loss, weights, reduction;
    with ``parity`` also per-class weights and a soft cap."""
    b = data.draw(st.integers(1, 3), label="B")
    t = data.draw(st.integers(1, 5), label="T")
    v = data.draw(st.integers(2, max_v), label="V")
    three_d = data.draw(st.booleans(), label="3-D")
    pattern = data.draw(st.sampled_from(["none", "some", "all"]), label="ignored")
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    labels = torch.randint(0, v, (b, t), generator=gen)
    if pattern == "some":
        labels = labels.masked_fill(torch.rand(b, t, generator=gen) < 0.4, IGNORE)
    elif pattern == "all":
        labels = torch.full((b, t), IGNORE)
    if not three_d:
        labels = labels.reshape(-1)
    weights = torch.rand(labels.shape, generator=gen, dtype=torch.float64) * 2 if data.draw(st.booleans(), label="w") else None
    config = {
        "label_smoothing": data.draw(st.sampled_from([0.0, 0.0, 0.1, 0.5]), label="eps"),
        "z_loss": data.draw(st.sampled_from([0.0, 0.0, 1e-2, 0.5]), label="z"),
        "reduction": data.draw(st.sampled_from(["mean", "sum", "none"]), label="reduction"),
        "shift": data.draw(st.sampled_from([None, True, False]), label="shift"),
    }
    class_weights = None
    if parity:
        config["softcap"] = data.draw(st.sampled_from([None, 2.0, 30.0]), label="softcap")
        if data.draw(st.booleans(), label="class weights"):
            class_weights = torch.rand(v, generator=gen, dtype=torch.float64) + 0.25
    return Case(b, t, v, three_d, labels, weights, config, class_weights)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-7, what: str = "") -> None:
    """``torch.testing.assert_close`` in float64 with a message naming ``what``."""
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def assert_grads_match(
    loss: torch.Tensor,
    ref: torch.Tensor,
    wrt: list[torch.Tensor | None],
    ref_wrt: list[torch.Tensor | None],
    names: list[str],
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """Gradients of ``loss`` and ``ref`` under one non-uniform upstream gradient (so
    ``reduction='none'`` is checked per token) agree for every present input pair."""
    upstream = torch.linspace(0.5, 2.0, max(ref.numel(), 1), dtype=torch.float64).reshape(ref.shape)
    pairs = [(w, r, n) for w, r, n in zip(wrt, ref_wrt, names) if w is not None and r is not None]
    got = torch.autograd.grad(loss, [w for w, _, _ in pairs], upstream, allow_unused=True)
    want = torch.autograd.grad(ref, [r for _, r, _ in pairs], upstream, allow_unused=True)
    for (w, _, name), g, e in zip(pairs, got, want):
        g = torch.zeros_like(w) if g is None else g
        e = torch.zeros_like(g) if e is None else e
        assert_close(g, e, rtol=rtol, atol=atol, what=f"grad of {name}")


@pytest.fixture(scope="session")
def tok() -> SimpleNamespace:
    """The shared reference helpers."""
    return SimpleNamespace(
        reference=reference_token_ce, draw_case=draw_case, assert_close=assert_close,
        assert_grads_match=assert_grads_match, IGNORE=IGNORE,
    )

