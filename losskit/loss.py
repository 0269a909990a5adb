"""The loss interface: :class:`Loss` and :class:`LossOutput`.

Every losskit loss is a ``torch.nn.Module`` built from one validated config. Subclasses
implement :meth:`Loss.compute`; ``forward`` returns ``compute(...).loss`` so a loss is
a drop-in replacement for any PyTorch loss module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import Tensor, nn

from losskit.config import LossConfig, Reduction

__all__ = ["Loss", "LossOutput", "reduce"]

C = TypeVar("C", bound=LossConfig)


@dataclass
class LossOutput:
    """What :meth:`Loss.compute` returns.

    Attributes:
        loss: the value ``forward`` returns (scalar, or per-sample for ``reduction="none"``).
        parts: named components of the loss, still attached to the graph
            (e.g. ``{"l1": ..., "giou": ...}``).
        metrics: detached diagnostics (accuracy, mean positive logit, temperature, ...).
            Tensors are detached on construction.
    """

    loss: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)
    metrics: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metrics = {
            k: (v.detach() if isinstance(v, Tensor) else torch.as_tensor(v)) for k, v in self.metrics.items()
        }


def reduce(values: Tensor, reduction: Reduction, *, normalizer: Tensor | float | None = None) -> Tensor:
    """Reduce per-sample ``values`` as a PyTorch loss does.

    Args:
        values: per-sample losses, any shape.
        reduction: ``"none"`` returns ``values``; ``"sum"`` their sum; ``"mean"`` the
            sum divided by ``normalizer`` (default: the number of elements; an empty
            tensor gives 0, connected to the graph, instead of NaN).
        normalizer: divisor for ``"mean"`` (e.g. number of supervised tokens, or
            DETR's ``num_boxes``); a tensor is allowed so no host sync is needed.
    """
    if reduction == "none":
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    if normalizer is None:
        normalizer = max(values.numel(), 1)
    return total / normalizer


class Loss(nn.Module, Generic[C]):
    """Base class of every losskit loss.

    Subclasses set ``config_class`` (the pydantic model they are built from) and
    implement :meth:`compute`. Learnable state (temperature, bias, ...) lives in
    ``nn.Parameter``s so it reaches the optimizer and ``state_dict()``.

    Args:
        config: an instance of ``config_class``; ``None`` uses its defaults.
    """

    config_class: ClassVar[type[LossConfig]] = LossConfig

    #: ``True`` when :meth:`compute` all-gathers its inputs across ``torch.distributed``
    #: ranks itself, as its config says (e.g. the contrastive losses' ``distributed``
    #: field; ``"none"`` there means the local batch only, on purpose). A trainer that
    #: runs such a loss under DDP passes the local features and must not gather them
    #: again; for any other loss it gathers them before the call (``losskit train`` does).
    gathers_features: ClassVar[bool] = False

    def __init__(self, config: C | None = None) -> None:
        super().__init__()
        if config is None:
            config = self.config_class()  # type: ignore[assignment]
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"config: expected an instance of {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config: C = config  # type: ignore[assignment]

    def compute(self, *inputs: Any, **kwargs: Any) -> LossOutput:
        """Compute the loss with its parts and metrics; subclasses implement this."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute()")

    def forward(self, *inputs: Any, **kwargs: Any) -> Tensor:
        """Return ``compute(*inputs, **kwargs).loss``."""
        return self.compute(*inputs, **kwargs).loss

    def learnable_fields(self) -> dict[str, str]:
        """Config fields whose value currently lives in a learnable ``nn.Parameter``.

        Maps the config field (e.g. ``"temperature"``) to the parameter's attribute name
        (e.g. ``"log_logit_scale"``). Setting such a field in the config would not
        change the loss, so :class:`losskit.Curriculum` refuses to schedule it unless
        :meth:`curriculum_setters` declares a setter for it. The base class has none.
        """
        return {}

    def curriculum_setters(self) -> dict[str, Callable[[float], None]]:
        """Setters through which :class:`losskit.Curriculum` may drive learnable fields.

        A field listed by :meth:`learnable_fields` can still be scheduled when the loss
        returns ``{field: setter}`` here: the curriculum then calls ``setter(value)``
        instead of assigning the config, and the setter decides what the value means
        for the parameter (e.g. sets ``config.<field>`` and resets the parameter to it).
        The field's config bounds are checked against the schedule either way. The base
        class declares none (``{}``).
        """
        return {}

    def learned_values(self) -> dict[str, float]:
        """Current values of the fields listed by :meth:`learnable_fields`, in the config's units.

        The default covers a scalar parameter named like its field (``logit_bias`` held
        in ``self.logit_bias``), read as is. A loss whose parameter holds a transform of
        the field (e.g. ``log_logit_scale = log(1 / temperature)``) overrides this to
        convert back. ``repr(loss)`` shows these values, marked ``(learned)``, instead of
        the initial config values.
        """
        values = {}
        for field, attr in self.learnable_fields().items():
            param = getattr(self, attr, None) if attr == field else None
            if isinstance(param, Tensor) and param.numel() == 1 and not param.is_meta:
                values[field] = float(param.detach().float().item())
        return values

    def term_losses(self) -> Mapping[str, Loss[Any]]:
        """The named losses this loss combines, each called with its own inputs.

        A loss that returns a non-empty mapping here (``mixture``) is called as
        ``compute(**{name: inputs_of_that_term})``: one entry per name, where the inputs
        are a dict of keyword inputs, a tuple of positional inputs or a
        :class:`losskit.Inputs`. A trainer uses it to route its inputs and to ask each
        term whether it :attr:`gathers_features`. The base class combines none (``{}``).
        """
        return {}

    def extra_repr(self) -> str:
        fields: Mapping[str, Any] = self.config.model_dump()
        learned = self.learned_values()
        return ", ".join(
            f"{k}={learned[k]:.6g} (learned)" if k in learned else f"{k}={v!r}" for k, v in fields.items()
        )
