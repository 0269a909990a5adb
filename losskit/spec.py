"""What the registry knows about one loss: :class:`LossSpec`, and the input-factory protocol."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import torch
from torch import Tensor

from losskit.config import LossConfig

if TYPE_CHECKING:
    from losskit.bench.spec import BenchSpec

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
        bench: the :class:`losskit.bench.BenchSpec` the plugin declared (example inputs,
            size presets, baselines, throughput), or ``None``.
    """

    name: str
    qualified_name: str
    loss_class: type
    config_class: type[LossConfig]
    plugin: str
    summary: str = ""
    bundled: bool = False
    bench: BenchSpec | None = None

    def _bench_field(self, name: str, default: Any) -> Any:
        warnings.warn(
            f"LossSpec.{name} is deprecated; read spec.bench.{name} (a losskit.bench.BenchSpec, None when undeclared)",
            DeprecationWarning,
            stacklevel=3,
        )
        return getattr(self.bench, name) if self.bench is not None else default

    @property
    def example_inputs(self) -> InputFactory | None:
        """Deprecated: ``spec.bench.example_inputs``."""
        return self._bench_field("example_inputs", None)

    @property
    def sizes(self) -> Mapping[str, Mapping[str, int]]:
        """Deprecated: ``spec.bench.sizes``."""
        return self._bench_field("sizes", dict(DEFAULT_SIZES))

    @property
    def baselines(self) -> Mapping[str, Callable[..., Tensor]]:
        """Deprecated: ``spec.bench.baselines``."""
        return self._bench_field("baselines", {})

    @property
    def throughput_keys(self) -> tuple[str, ...] | None:
        """Deprecated: ``spec.bench.throughput_keys``."""
        return self._bench_field("throughput_keys", None)

    @property
    def throughput_unit(self) -> str:
        """Deprecated: ``spec.bench.throughput_unit``."""
        return self._bench_field("throughput_unit", "samples")
