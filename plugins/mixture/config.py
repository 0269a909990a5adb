"""Configuration of the ``mixture`` loss: its terms (any registered losses), weights and weighting."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    ValidationInfo,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_validator,
)

import losskit
from losskit.checks import CheckInputs
from losskit.errors import AmbiguousLossError, ConfigError, UnknownLossError
from losskit.registry import current_registry

__all__ = ["DEFAULT_TERMS", "DWAOptions", "GradNormOptions", "MixtureConfig", "TermOptions", "UncertaintyOptions", "Weighting"]

Weighting = Literal["static", "uncertainty", "dwa", "gradnorm"]

#: the default terms: a grounding model's image-text contrastive, token cross-entropy and box losses
DEFAULT_TERMS = {"itc": {"name": "clip"}, "lm": {"name": "token_ce"}, "box": {"name": "bbox"}}

_TERM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: prefixes of the mixture's own metrics; a term may not be named like them
RESERVED_TERM_NAMES = frozenset({"weight", "log_var", "dwa_lambda", "grad_norm", "gradnorm_loss"})

_TERM_SCHEMA = {
    "type": "object",
    "description": "A registered loss: its `name` plus the fields of its config (see `losskit show NAME`).",
    "properties": {"name": {"type": "string", "description": "Registered loss name (`losskit list`)."}},
    "required": ["name"],
    "additionalProperties": True,
}


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TermOptions(_Options):
    """Per-term options of the adaptive weightings."""

    task: Literal["regression", "classification"] = Field(
        "regression",
        description="uncertainty: 'regression' weighs the term exp(-s)/2 (Gaussian likelihood), "
        "'classification' exp(-s) (softmax likelihood); both add s/2 (Kendall et al., 2018).",
    )
    init_log_var: float = Field(
        0.0, ge=-20.0, le=20.0, description="uncertainty: initial log-variance s = log(sigma^2) of this term."
    )


class UncertaintyOptions(_Options):
    """Options of ``weighting: uncertainty`` (Kendall, Gal & Cipolla, CVPR 2018)."""

    clamp: tuple[Annotated[float, Field(ge=-20.0, le=20.0)], Annotated[float, Field(ge=-20.0, le=20.0)]] | None = Field(
        None,
        description="[min, max] applied to each log-variance in the forward pass (no gradient outside); null: none.",
    )

    @field_validator("clamp")
    @classmethod
    def _ordered(cls, clamp: tuple[float, float] | None) -> tuple[float, float] | None:
        if clamp is not None and clamp[0] >= clamp[1]:
            raise ValueError(f"expected [min, max] with min < max, got {list(clamp)}")
        return clamp


class DWAOptions(_Options):
    """Options of ``weighting: dwa`` (Dynamic Weight Average, Liu, Johns & Davison, CVPR 2019)."""

    window: int = Field(
        100, ge=1, le=10_000_000, description="Training forward calls per window; a window's mean loss plays the paper's epoch loss."
    )
    temperature: float = Field(2.0, gt=0.0, le=1e4, description="Softmax temperature T of the loss ratios (paper: 2).")
    sync_distributed: bool = Field(
        True, description="All-reduce each window's mean losses over torch.distributed ranks (when initialised)."
    )


class GradNormOptions(_Options):
    """Options of ``weighting: gradnorm`` (Chen et al., ICML 2018)."""

    alpha: float = Field(1.5, ge=0.0, le=10.0, description="Restoring-force asymmetry alpha (paper: 0.12 to 3; 1.5 common).")
    min_weight: float = Field(
        1e-3, gt=0.0, le=1.0, description="Lower bound of a weight before the weights are renormalised to sum to the number of terms."
    )


class MixtureConfig(losskit.LossConfig):
    """Configuration of :class:`~losskit_plugins.mixture.MixtureLoss`."""

    reduction: Literal["sum"] = Field(
        "sum", description="The mixture is the weighted sum of its terms, each reduced by its own `reduction`."
    )
    terms: dict[str, Annotated[losskit.LossConfig, WithJsonSchema(_TERM_SCHEMA)]] = Field(
        default=DEFAULT_TERMS,
        validate_default=True,
        min_length=1,
        description="Term name -> registered loss spec ({name: ..., fields...}); validated recursively. "
        "Default: the grounding trio (contrastive, token cross-entropy, boxes).",
    )
    weights: dict[str, Annotated[float, Field(ge=0.0, le=1e6, allow_inf_nan=False)]] = Field(
        default={},
        validate_default=True,
        description="Static weight of each term (default 1); with 'gradnorm' the initial weights (renormalised).",
    )
    weighting: Literal["static", "uncertainty", "dwa", "gradnorm"] = Field(
        "static", description="How the weights adapt: static, uncertainty (Kendall 2018), dwa (Liu 2019), gradnorm (Chen 2018)."
    )
    term_options: dict[str, TermOptions] = Field(
        default={}, validate_default=True, description="Per-term options (default TermOptions()) by term name."
    )
    uncertainty: UncertaintyOptions = Field(UncertaintyOptions(), description="Options of 'uncertainty'.")
    dwa: DWAOptions = Field(DWAOptions(), description="Options of 'dwa'.")
    gradnorm: GradNormOptions = Field(GradNormOptions(), description="Options of 'gradnorm'.")
    term_metrics: bool = Field(
        True,
        description="Collect each term's own metrics in `compute` (calling the mixture, `forward`, never does); "
        "false calls the terms' `forward`, which some losses (e.g. clip) run without their metrics' extra work.",
    )
    check_inputs: CheckInputs = Field(
        "auto",
        description="The mixture's own value check: a term loss that is NaN/inf raises, naming the term "
        "('auto': on CPU tensors only, no host sync on CUDA; 'always'; 'never'). Each term checks its own "
        "inputs by its own check_inputs.",
    )

    @field_validator("terms", mode="before")
    @classmethod
    def _resolve_terms(cls, terms: Any, info: ValidationInfo) -> Any:
        """Validate each term through the registry in use; errors come back as ``<term>.<field>``.

        The registry is the validation context's ``"registry"`` (a ``Registry`` validating
        this mixture passes itself), else the one building, else the default one.
        """
        registry = current_registry(info)
        if not isinstance(terms, dict):
            return terms  # pydantic reports the type error
        resolved, errors = {}, []
        for name, spec in terms.items():
            if not isinstance(name, str) or not _TERM_NAME.match(name) or name in RESERVED_TERM_NAMES:
                errors.append((
                    str(name),
                    f"term names must match {_TERM_NAME.pattern} and not be one of {sorted(RESERVED_TERM_NAMES)}",
                ))
                continue
            try:
                resolved[name] = registry.resolve_config(spec, prefix=name)
            except ConfigError as exc:
                errors.extend(exc.errors)
                continue
            except (UnknownLossError, AmbiguousLossError) as exc:
                errors.append((f"{name}.name", str(exc)))
                continue
            if resolved[name].reduction == "none":
                errors.append((f"{name}.reduction", "a mixture term must reduce to a scalar: use 'mean' or 'sum'"))
        if errors:
            raise ConfigError(errors)
        return resolved

    @field_validator("weights", "term_options")
    @classmethod
    def _per_term(cls, per_term: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Check the keys against the terms and fill the defaults of the missing ones."""
        terms = info.data.get("terms")
        if terms is None:
            return per_term  # the terms failed; their error is reported
        unknown = sorted(set(per_term) - set(terms))
        if unknown:
            raise ConfigError([(k, f"not a term of this mixture; terms are {sorted(terms)}") for k in unknown])
        if info.field_name == "weights":
            return {name: per_term.get(name, 1.0) for name in terms}
        return {name: per_term.get(name) or TermOptions() for name in terms}

    @model_validator(mode="after")
    def _gradnorm_weights(self) -> MixtureConfig:
        if self.weighting == "gradnorm" and self.weights and not any(self.weights.values()):
            raise ConfigError([("weights", "weighting 'gradnorm' needs initial weights with a positive sum")])
        return self

    @field_serializer("terms")
    def _dump_terms(self, terms: dict[str, losskit.LossConfig], info: FieldSerializationInfo) -> dict[str, Any]:
        """Each term as ``{"name": qualified name, **fields}`` so a dump validates again."""
        return {
            name: {
                "name": cfg._losskit_name or current_registry().spec_for_config(cfg).qualified_name,
                **cfg.model_dump(mode=info.mode),
            }
            for name, cfg in terms.items()
        }
