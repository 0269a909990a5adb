"""What the registry knows about one loss: :class:`LossSpec`, and the input-factory protocol."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from losskit.config import LossConfig

__all__ = ["InputFactory", "Inputs", "LossSpec", "DEFAULT_SIZES"]


class Inputs(NamedTuple):
    """Positional and keyword inputs of one loss call: ``loss(*inputs.args, **inputs.kwargs)``."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class InputFactory(Protocol):
    """Draws valid inputs of a loss.

    Called as ``factory(size, dtype=..., device=..., generator=...)`` where ``size``
    is a mapping of dimension names to sizes (e.g. ``{"B": 8, "D": 16}``). Floating
    tensors that the loss differentiates must have ``requires_grad=True``; the
    conformance kit runs ``gradcheck`` with respect to exactly those.
    """

    def __call__(
        self,
        size: Mapping[str, int],
        *,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator,
    ) -> Inputs: ...


#: Size presets used when a spec declares none; ``tiny`` feeds the conformance kit.
DEFAULT_SIZES: Mapping[str, Mapping[str, int]] = {
    "tiny": {"B": 4, "D": 3},
    "small": {"B": 256, "D": 64},
    "medium": {"B": 1024, "D": 256},
    "large": {"B": 4096, "D": 512},
}


@dataclass(frozen=True)
class LossSpec:
    """One registered loss.

    Attributes:
        name: short name, e.g. ``"clip"``.
        qualified_name: ``"plugin:name"``, always unambiguous.
        loss_class: the :class:`~losskit.Loss` subclass.
        config_class: its :class:`~losskit.LossConfig` subclass.
        plugin: name of the plugin (entry-point name) that registered it.
        summary: one-line description.
        bundled: registered by a plugin shipped with losskit.
        example_inputs: input factory for ``losskit.testing`` and ``losskit bench``.
        sizes: named size presets for ``example_inputs`` (``tiny``, ``small``, ...).
        baselines: reference implementations ``f(*args, **kwargs) -> Tensor`` taking the
            same inputs as the loss, timed side by side by ``losskit bench``.
        throughput_keys: size keys whose product is the number of items one call
            processes, for ``losskit bench``'s throughput (e.g. ``("B", "T")`` for
            tokens); ``None`` counts the ``B`` key, else ``N``.
        throughput_unit: what those items are, e.g. ``"tokens"`` (default ``"samples"``).
    """

    name: str
    qualified_name: str
    loss_class: type
    config_class: type[LossConfig]
    plugin: str
    summary: str = ""
    bundled: bool = False
    example_inputs: InputFactory | None = None
    sizes: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: dict(DEFAULT_SIZES))
    baselines: Mapping[str, Callable[..., Tensor]] = field(default_factory=dict)
    throughput_keys: tuple[str, ...] | None = None
    throughput_unit: str = "samples"
