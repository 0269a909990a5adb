"""The shared input policy helpers: which checks read values where, and finite-value errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from losskit.checks import check_finite, compute_dtype, value_checks_enabled


@pytest.mark.parametrize(
    ("mode", "device", "expected"),
    [
        ("auto", "cpu", True),
        ("auto", "meta", False),
        ("auto", "cuda", False),
        ("always", "cuda", True),
        ("always", "meta", True),
        ("never", "cpu", False),
    ],
)
def test_value_checks_enabled(mode: str, device: str, expected: bool) -> None:
    assert value_checks_enabled(mode, torch.device(device)) is expected  # type: ignore[arg-type]


@given(
    rows=st.integers(1, 5),
    cols=st.integers(1, 5),
    data=st.data(),
    bad=st.sampled_from([float("nan"), float("inf"), float("-inf")]),
)
def test_check_finite_names_argument_and_first_bad_index(rows: int, cols: int, data: st.DataObject, bad: float) -> None:
    x = torch.randn(rows, cols)
    i, j = data.draw(st.integers(0, rows - 1)), data.draw(st.integers(0, cols - 1))
    x[i, j] = bad
    with pytest.raises(ValueError, match=rf"^text_features: expected finite values, got -?(nan|inf) at index \({i}, {j}\)"):
        check_finite(image_features=torch.zeros(2, 2), text_features=x)


def test_check_finite_accepts_finite_empty_none_and_integer_tensors() -> None:
    check_finite(a=torch.randn(3), b=torch.empty(0), c=None, labels=torch.tensor([1, -100]))


@pytest.mark.parametrize(
    ("dtypes", "expected"),
    [
        ((torch.float16,), torch.float32),
        ((torch.bfloat16, torch.float32), torch.float32),
        ((torch.float32, torch.float64), torch.float64),
        ((torch.float64,), torch.float64),
    ],
)
def test_compute_dtype_policy(dtypes: tuple[torch.dtype, ...], expected: torch.dtype) -> None:
    assert compute_dtype(*(torch.zeros(1, dtype=d) for d in dtypes), None) == expected


def test_auto_skips_value_checks_while_compiling_and_always_keeps_them() -> None:
    seen: dict[str, bool] = {}

    def probe(x: torch.Tensor) -> torch.Tensor:
        seen["auto"] = value_checks_enabled("auto", x.device)
        seen["always"] = value_checks_enabled("always", x.device)
        return x + 1

    torch.compile(probe, backend="eager", fullgraph=True)(torch.zeros(2))
    assert seen == {"auto": False, "always": True}
