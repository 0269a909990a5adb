"""Conformance kit: :func:`check_loss` verifies that a loss honours the losskit contract.

Use it from any test suite, like scikit-learn's ``check_estimator``::

    from losskit.testing import check_loss

    def test_my_loss_conforms():
        check_loss("my_plugin:focal")

Inputs come from the ``example_inputs`` factory of the spec's
:class:`~losskit.bench.BenchSpec` at its ``tiny`` size, drawn
with ``seeds`` different generators. Checks:

``config``       JSON round-trip of the config; JSON Schema builds; every field is described.
``bad_config``   unknown fields and a bad ``reduction`` raise :class:`~losskit.errors.ConfigError`.
``finite``       fp32 loss and gradients are finite.
``gradcheck``    ``torch.autograd.gradcheck`` in float64, w.r.t. the inputs that require
                 grad and the loss's own parameters.
``reduction``    ``sum(loss(reduction="none")) == loss(reduction="sum")`` and ``mean`` is
                 ``sum / n`` with ``0 < n <= numel``.
``low_precision`` fp16/bf16 inputs give an fp32 result close to the fp32 one.
``state_dict``   parameters survive ``state_dict()``/``load_state_dict()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from losskit import registry
from losskit.config import validate_config
from losskit.conformance import CHECKS, CheckContext, map_tensors
from losskit.errors import LosskitError
from losskit.loss import Loss
from losskit.spec import InputFactory, LossSpec

__all__ = ["CheckReport", "CheckResult", "check_loss", "map_tensors", "CHECKS"]


@dataclass
class CheckResult:
    """Outcome of one check: ``status`` is ``passed``, ``failed`` or ``not applicable``."""

    name: str
    status: str
    message: str = ""


@dataclass
class CheckReport:
    """All check results for one loss."""

    loss: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status != "failed" for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "failed"]

    def render(self) -> str:
        lines = [f"{self.loss}: {'ok' if self.ok else 'FAILED'}"]
        for r in self.results:
            mark = {"passed": "ok  ", "failed": "FAIL", "not applicable": "n/a "}[r.status]
            lines.append(f"  {mark} {r.name}" + (f": {r.message}" if r.message else ""))
        return "\n".join(lines)


def _spec_for(target: str | type | LossSpec) -> LossSpec:
    if isinstance(target, LossSpec):
        return target
    if isinstance(target, str):
        return registry.get_spec(target)
    if isinstance(target, type) and issubclass(target, Loss):
        matches = [s for s in registry.default_registry().specs() if s.loss_class is target]
        if len(matches) != 1:
            raise LosskitError(
                f"{target.__name__} is registered {len(matches)} times; pass its name (or a LossSpec) to check_loss"
            )
        return matches[0]
    raise TypeError(f"name_or_class: expected a loss name, a Loss subclass or a LossSpec, got {target!r}")


def check_loss(
    name_or_class: str | type | LossSpec,
    *,
    config: Any = None,
    example_inputs: InputFactory | None = None,
    seeds: int = 3,
    checks: Iterable[str] | None = None,
    raise_on_failure: bool = True,
) -> CheckReport:
    """Run the conformance checks on one loss.

    Args:
        name_or_class: a registered name (``"clip"``, ``"plugin:loss"``), a registered
            ``Loss`` subclass, or a :class:`~losskit.LossSpec`.
        config: config instance or dict of fields to check with (default: the
            config's defaults).
        example_inputs: input factory overriding the spec's.
        seeds: number of input draws (each check runs on every draw).
        checks: subset of :data:`CHECKS` to run (default: all).
        raise_on_failure: raise ``AssertionError`` listing every failed check.

    Returns:
        The :class:`CheckReport` (``.ok``, ``.results``, ``.failures``, ``.render()``).

    Raises:
        AssertionError: a check failed and ``raise_on_failure`` is true (the message is
            the rendered report).
        LosskitError: the loss has no input factory (none registered, none passed).
        PluginError: the input factory raised (the message names the loss and size).
        ValueError: an unknown name in ``checks``.
    """
    spec = _spec_for(name_or_class)
    factory = example_inputs or (spec.bench.example_inputs if spec.bench is not None else None)
    if factory is None:
        raise LosskitError(
            f"{spec.qualified_name} declares no example_inputs; pass example_inputs= to check_loss "
            "or register(..., bench=losskit.bench.BenchSpec(example_inputs=factory))"
        )
    if isinstance(config, dict):
        config = validate_config(spec.config_class, config)
    ctx = CheckContext(spec, config, factory, seeds)
    selected: Sequence[str] = list(checks) if checks is not None else list(CHECKS)
    unknown = [c for c in selected if c not in CHECKS]
    if unknown:
        raise ValueError(f"checks: unknown check(s) {unknown}; expected some of {list(CHECKS)}")
    report = CheckReport(spec.qualified_name)
    for name in selected:
        try:
            note = CHECKS[name](ctx)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised midway
            report.results.append(CheckResult(name, "failed", f"{type(exc).__name__}: {exc}".strip()[:2000]))
            continue
        status = "not applicable" if note.startswith("not applicable") else "passed"
        report.results.append(CheckResult(name, status, note))
    if raise_on_failure and not report.ok:
        raise AssertionError(report.render())
    return report
