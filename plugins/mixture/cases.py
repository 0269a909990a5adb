"""Example inputs and bench sizes of the default ``mixture`` (``clip`` + ``token_ce`` + ``bbox``):
each term draws its inputs with its own registered factory."""

from __future__ import annotations

from collections.abc import Mapping

import torch

import losskit
from losskit_plugins.mixture.config import DEFAULT_TERMS

__all__ = ["SIZES", "example_inputs"]


def example_inputs(
    size: Mapping[str, int], *, dtype: torch.dtype, device: torch.device, generator: torch.Generator
) -> losskit.Inputs:
    """Inputs of the default mixture: ``{term: losskit.Inputs}`` from each term's own factory.

    ``size`` holds ``"<term>.<dim>"`` entries (e.g. ``"itc.B"``); each term's loss draws
    its inputs with its registered ``example_inputs`` at the ``<dim>`` sizes.
    """
    per_term: dict[str, dict[str, int]] = {}
    for key, n in size.items():
        term, dim = key.split(".", 1)
        per_term.setdefault(term, {})[dim] = n
    inputs = {}
    for term, dims in per_term.items():
        bench = losskit.get_spec(DEFAULT_TERMS[term]["name"]).bench
        factory = bench.example_inputs if bench is not None else None
        if factory is None:
            raise losskit.errors.LosskitError(f"{term}: loss {DEFAULT_TERMS[term]['name']!r} declares no example_inputs")
        inputs[term] = factory(dims, dtype=dtype, device=device, generator=generator)
    return losskit.Inputs((inputs,), {})


#: per default term, its dims at each bench/conformance size (clip [B, D], token_ce [B, T, V], bbox [N])
_TERM_SIZES = {
    "itc": {"tiny": {"B": 4, "D": 3}, "small": {"B": 256, "D": 128},
            "medium": {"B": 1024, "D": 256}, "large": {"B": 4096, "D": 512}},
    "lm": {"tiny": {"B": 2, "T": 4, "V": 5}, "small": {"B": 4, "T": 128, "V": 4096},
           "medium": {"B": 2, "T": 512, "V": 32000}, "large": {"B": 1, "T": 2048, "V": 32000}},
    "box": {"tiny": {"N": 5}, "small": {"N": 256}, "medium": {"N": 1024}, "large": {"N": 4096}},
}
SIZES = {
    preset: {f"{term}.{dim}": n for term in DEFAULT_TERMS for dim, n in _TERM_SIZES[term][preset].items()}
    for preset in ("tiny", "small", "medium", "large")
}
