"""What a loss declares for ``losskit bench`` and the conformance kit: :class:`BenchSpec`.

A plugin passes one to ``register(name, loss_class, config=..., bench=BenchSpec(...))``.
The core registry stores it on the :class:`~losskit.LossSpec` without looking inside;
the bench and ``losskit.testing`` read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from losskit.spec import DEFAULT_SIZES, InputFactory

__all__ = ["BenchSpec", "DEFAULT_SIZES"]


def _check_sizes(sizes: Any) -> dict[str, dict[str, int]]:
    if not isinstance(sizes, Mapping) or not sizes:
        raise TypeError(f"sizes: expected a non-empty mapping of preset name -> {{dim: size}}, got {sizes!r}")
    out: dict[str, dict[str, int]] = {}
    for preset, dims in sizes.items():
        if not isinstance(preset, str) or not isinstance(dims, Mapping) or not dims:
            raise TypeError(f"sizes[{preset!r}]: expected a non-empty mapping of dimension name -> int, got {dims!r}")
        for key, value in dims.items():
            if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"sizes[{preset!r}][{key!r}]: expected an int >= 1, got {value!r}")
        out[preset] = dict(dims)
    return out


@dataclass(frozen=True)
class BenchSpec:
    """Bench and conformance-kit metadata of one loss.

    Attributes:
        example_inputs: input factory (see :class:`~losskit.spec.InputFactory`); the
            conformance kit draws at the ``tiny`` size, ``losskit bench`` at the others.
            ``None``: the loss cannot be benchmarked.
        sizes: named size presets for the factory (``tiny``, ``small``, ``medium``, ``large``).
        baselines: reference implementations ``f(*args, **kwargs) -> Tensor`` taking the
            same inputs as the loss, timed side by side.
        throughput_keys: size keys whose product is the number of items one call
            processes (e.g. ``("B", "T")`` for tokens); ``None`` counts ``B``, else ``N``.
        throughput_unit: what those items are (default ``"samples"``).

    Raises:
        TypeError, ValueError: a field of the wrong type or value; the message names it.
    """

    example_inputs: InputFactory | None = None
    sizes: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: dict(DEFAULT_SIZES))
    baselines: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    throughput_keys: tuple[str, ...] | None = None
    throughput_unit: str = "samples"

    def __post_init__(self) -> None:
        if self.example_inputs is not None and not callable(self.example_inputs):
            raise TypeError(f"example_inputs: expected a callable input factory, got {self.example_inputs!r}")
        object.__setattr__(self, "sizes", _check_sizes(self.sizes))
        baselines = dict(self.baselines or {})
        bad = [label for label, fn in baselines.items() if not isinstance(label, str) or not callable(fn)]
        if bad:
            raise TypeError(f"baselines: expected a mapping of label (str) -> callable, bad entries {bad!r}")
        object.__setattr__(self, "baselines", baselines)
        object.__setattr__(self, "throughput_keys", self._checked_keys(self.throughput_keys))
        if not isinstance(self.throughput_unit, str) or not self.throughput_unit:
            raise TypeError(f"throughput_unit: expected a non-empty str, got {self.throughput_unit!r}")

    def _checked_keys(self, keys: Sequence[str] | None) -> tuple[str, ...] | None:
        if keys is None:
            return None
        if isinstance(keys, str) or not keys or not all(isinstance(k, str) for k in keys):
            raise TypeError(f"throughput_keys: expected a non-empty tuple of size keys, got {keys!r}")
        missing = {p: sorted(set(keys) - set(d)) for p, d in self.sizes.items() if set(keys) - set(d)}
        if missing:
            raise ValueError(f"throughput_keys: {tuple(keys)!r} must be keys of every size preset (missing in {missing})")
        return tuple(keys)
