"""``mixture``: a weighted sum of registered losses (static, uncertainty, DWA or GradNorm weights)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

import losskit
from losskit.checks import check_finite, to_float32, value_checks_enabled
from losskit.registry import current_registry
from losskit_plugins.mixture.config import MixtureConfig
from losskit_plugins.mixture.terms import call_term
from losskit_plugins.mixture.weighting import GradNormWeighting, UncertaintyWeighting, make_weighting

__all__ = ["MixtureLoss"]


class MixtureLoss(losskit.Loss[MixtureConfig]):
    """Weighted sum of registered losses, with static, uncertainty, DWA or GradNorm weighting.

    Call: ``mixture(**{term: inputs})`` or ``mixture({term: inputs})``, exactly one entry
    per term, where ``inputs`` is a dict of keyword inputs, a tuple of positional inputs
    or a :class:`losskit.Inputs`. Every term must return a scalar. Returns the total
    (scalar). ``compute`` also returns each term's loss in ``parts[term]``, the effective
    weight of each term in ``metrics["weight/<term>"]`` and each term's own metrics as
    ``metrics["<term>/<metric>"]``.

    The terms are submodules (``mixture.terms[name]``), so ``mixture.parameters()``
    includes their learnable state (e.g. a CLIP temperature) as well as the weighting's
    (log-variances, GradNorm weights).
    """

    config_class = MixtureConfig

    def __init__(self, config: MixtureConfig | None = None) -> None:
        super().__init__(config)
        registry = current_registry()  # the registry building this mixture (see Registry.build)
        self.terms = nn.ModuleDict(
            {name: registry.spec_for_config(cfg).loss_class(cfg) for name, cfg in self.config.terms.items()}
        )
        self.weighting = make_weighting(self.config)
        self._weighting_name = self.config.weighting

    def term_losses(self) -> dict[str, losskit.Loss]:
        """The terms by name; each is called with its own inputs (``compute(**{name: inputs})``)."""
        return dict(self.terms.items())  # type: ignore[arg-type]

    # ---------------------------------------------------------------- calling
    def compute(self, inputs: Mapping[str, Any] | None = None, /, **term_inputs: Any) -> losskit.LossOutput:
        """Evaluate every term on its inputs and combine them (see the class docstring)."""
        return self._run(inputs, term_inputs, term_metrics=self.config.term_metrics, own_metrics=True)

    def forward(self, inputs: Mapping[str, Any] | None = None, /, **term_inputs: Any) -> Tensor:
        """The total only: the terms' ``forward`` (no metrics' extra passes), no weighting metrics."""
        return self._run(inputs, term_inputs, term_metrics=False, own_metrics=False).loss

    def _run(
        self, inputs: Mapping[str, Any] | None, term_inputs: dict[str, Any], *, term_metrics: bool, own_metrics: bool
    ) -> losskit.LossOutput:
        by_term = self._gather(inputs, term_inputs)
        self._check_unchanged()
        outputs = {name: call_term(name, term, by_term[name], term_metrics) for name, term in self.terms.items()}
        term_losses = [to_float32(out.loss) for out in outputs.values()]
        self._check_devices(term_losses)
        losses = torch.stack(term_losses)  # [T]
        if value_checks_enabled(self.config.check_inputs, losses.device):
            check_finite(**{f"terms.{name}.loss": loss for name, loss in zip(outputs, term_losses)})
        combined = self.weighting.combine(losses, term_losses)
        parts = dict(zip(outputs, term_losses))
        if not own_metrics:
            return losskit.LossOutput(loss=combined.total, parts=parts)
        metrics = {**self.weighting.named_metrics("weight", combined.weights), **combined.metrics}
        for name, out in outputs.items():
            metrics.update({f"{name}/{key}": value for key, value in out.metrics.items()})
        return losskit.LossOutput(loss=combined.total, parts=parts, metrics=metrics)

    def _gather(self, inputs: Mapping[str, Any] | None, term_inputs: dict[str, Any]) -> dict[str, Any]:
        if inputs is not None:
            if term_inputs:
                raise TypeError("mixture: pass the inputs either as one dict or as keyword arguments, not both")
            if not isinstance(inputs, Mapping):
                raise TypeError(f"inputs: expected a dict of term name -> inputs, got {type(inputs).__name__}")
            term_inputs = dict(inputs)
        missing = [n for n in self.terms if n not in term_inputs]
        unexpected = [n for n in term_inputs if n not in self.terms]
        if missing or unexpected:
            problems = []
            if missing:
                problems.append(f"missing inputs for term(s) {missing}")
            if unexpected:
                problems.append(f"unexpected term(s) {unexpected}")
            raise TypeError(f"mixture: {'; '.join(problems)}; expected exactly the terms {list(self.terms)}")
        return term_inputs

    def _check_devices(self, term_losses: list[Tensor]) -> None:
        """All term losses, and the weighting's state, on one device (metadata only: no sync)."""
        names = list(self.terms)
        device = term_losses[0].device
        if any(loss.device != device for loss in term_losses):
            listing = ", ".join(f"terms.{name} on {loss.device}" for name, loss in zip(names, term_losses))
            raise ValueError(f"mixture: the terms' losses must be on one device, got {listing}")
        state = next(itertools.chain(self.weighting.parameters(), self.weighting.buffers()), None)
        if state is not None and state.device != device:
            raise ValueError(
                f"mixture: the {self.config.weighting!r} weighting's state is on {state.device} but the term losses "
                f"are on {device}; move the loss like the model: mixture.to({str(device)!r})"
            )

    def _check_unchanged(self) -> None:
        """The modules are built once: replacing ``config.terms`` or ``config.weighting`` needs a new mixture."""
        if self.config.weighting != self._weighting_name or any(
            self.config.terms.get(name) is not term.config for name, term in self.terms.items()
        ):
            raise RuntimeError(
                "mixture: config.terms or config.weighting was replaced after building; build a new mixture "
                "(fields inside a term, e.g. config.terms['box'].iou_weight, can be changed)"
            )

    # ------------------------------------------------------------ weighting API
    def set_shared_parameters(self, params: Iterable[Tensor]) -> None:
        """GradNorm: the shared parameters ``W`` (e.g. the last shared layer) whose gradient
        norms are balanced. Held by reference, not registered (they belong to the model)."""
        if not isinstance(self.weighting, GradNormWeighting):
            raise RuntimeError(f"set_shared_parameters is for weighting 'gradnorm', this mixture uses {self.config.weighting!r}")
        self.weighting.set_shared_parameters(params)

    def weighting_parameters(self) -> list[nn.Parameter]:
        """The weighting's own parameters (uncertainty log-variances, GradNorm weights)."""
        return list(self.weighting.parameters())

    def parameter_groups(self, *, weight_decay: float | None = None, weighting_lr: float | None = None) -> list[dict[str, Any]]:
        """Optimizer parameter groups: the terms' parameters, and the weighting's without weight decay.

        Weight decay would pull the uncertainty log-variances (and GradNorm weights) toward
        0, a bias the method does not have, so their group has ``weight_decay=0.0``::

            opt = torch.optim.AdamW([{"params": model.parameters()}, *mixture.parameter_groups()],
                                    lr=1e-4, weight_decay=0.1)

        Args:
            weight_decay: weight decay of the terms' parameters (default: the optimizer's).
            weighting_lr: learning rate of the weighting's parameters (default: the optimizer's).

        Returns:
            Non-empty groups only (a mixture without parameters gives ``[]``).
        """
        own = {id(p) for p in self.weighting.parameters()}
        groups: list[dict[str, Any]] = []
        terms = [p for p in self.parameters() if id(p) not in own]
        if terms:
            groups.append({"params": terms, **({} if weight_decay is None else {"weight_decay": weight_decay})})
        if own:
            groups.append({
                "params": self.weighting_parameters(),
                "weight_decay": 0.0,
                **({} if weighting_lr is None else {"lr": weighting_lr}),
            })
        return groups

    # ------------------------------------------------------------- curriculum
    def learnable_fields(self) -> dict[str, str]:
        """The terms' learnable fields (``terms.<term>.<field>``) and, for adaptive weightings,
        the config values that only initialise a parameter (GradNorm ``weights.<term>``,
        uncertainty ``term_options.<term>.init_log_var``)."""
        fields = {
            f"terms.{name}.{field}": f"terms.{name}.{param}"
            for name, term in self.terms.items()
            for field, param in term.learnable_fields().items()
        }
        if isinstance(self.weighting, GradNormWeighting):
            fields.update({f"weights.{name}": "weighting.weights" for name in self.terms})
        if isinstance(self.weighting, UncertaintyWeighting):
            fields.update({f"term_options.{name}.init_log_var": f"weighting.log_vars.{name}" for name in self.terms})
        return fields

    def curriculum_setters(self) -> dict[str, Callable[[float], None]]:
        """The terms' declared setters for learnable fields, under ``terms.<term>.``."""
        return {
            f"terms.{name}.{path}": setter
            for name, term in self.terms.items()
            for path, setter in term.curriculum_setters().items()
        }

