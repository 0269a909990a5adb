"""``terms_by_hand``: the ``losskit bench`` baseline of ``mixture`` (its default terms called directly)."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import torch
from torch import Tensor

import losskit
from losskit_plugins.mixture.config import DEFAULT_TERMS

__all__ = ["terms_by_hand"]


def terms_by_hand(inputs: Mapping[str, losskit.Inputs]) -> Tensor:
    """Baseline for ``losskit bench``: the default terms called directly and summed (no mixture)."""
    terms = _default_terms()
    return torch.stack([terms[name](*inputs[name].args, **inputs[name].kwargs) for name in DEFAULT_TERMS]).sum()


@functools.cache
def _default_terms() -> dict[str, losskit.Loss]:
    return {name: losskit.build(spec) for name, spec in DEFAULT_TERMS.items()}
