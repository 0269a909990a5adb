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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(loss, ce_part, z_part)`` computed row by row in float64.

    Cross-entropy with label smoothing as ``torch.nn.functional.cross_entropy`` defines it,
    z-loss = coefficient * (log Z)^2 per supervised token; ``mean`` divides sums by
    ``num_items_in_batch`` or the supervised count (at least 1).
    """
    x = logits.double()
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
            ce_rows.append(rows[i].sum() * 0.0)
            z_rows.append(rows[i].sum() * 0.0)
            continue
        top = max(rows[i].tolist())
        lse = top + torch.log(sum(torch.exp(rows[i][j] - top) for j in range(v)))
        nll = lse - rows[i][y]
        smooth = lse - sum(rows[i][j] for j in range(v)) / v
        ce_rows.append(w[i] * ((1 - label_smoothing) * nll + label_smoothing * smooth))
        z_rows.append(w[i] * z_loss * lse**2)
    ce, z = torch.stack(ce_rows), torch.stack(z_rows)
    if reduction == "none":
        ce, z = ce.reshape(labels.shape), z.reshape(labels.shape)
    else:
        ce, z = ce.sum(), z.sum()
        if reduction == "mean":
            count = sum(1 for y in flat if y != ignore_index)
            norm = num_items_in_batch if num_items_in_batch is not None else max(count, 1)
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

    @property
    def rows_shape(self) -> tuple[int, ...]:
        return (self.b, self.t) if self.three_d else (self.b * self.t,)

    def shift(self) -> bool:
        shift = self.config.get("shift")
        return self.three_d if shift is None else shift

    def reference_kwargs(self) -> dict:
        kw = {k: v for k, v in self.config.items() if k not in ("shift", "chunk_size")}
        return {"shift": self.shift(), "weights": self.weights, **kw}


def draw_case(data: st.DataObject, *, max_v: int = 9) -> Case:
    """Draw shapes, an ignore pattern (none / some / all ignored), smoothing, z-loss, weights, reduction."""
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
    return Case(b, t, v, three_d, labels, weights, config)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-7, what: str = "") -> None:
    """``torch.testing.assert_close`` in float64 with a message naming ``what``."""
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


@pytest.fixture(scope="session")
def tok() -> SimpleNamespace:
    """The shared reference helpers."""
    return SimpleNamespace(
        reference=reference_token_ce, draw_case=draw_case, assert_close=assert_close, IGNORE=IGNORE
    )
