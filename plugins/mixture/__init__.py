"""Bundled losskit plugin ``mixture``: a weighted sum of any registered losses.

::

    mixture = losskit.build({
        "name": "mixture",
        "terms": {
            "focal": {"name": "focal", "gamma": 2.0},
            "aux": {"name": "focal", "gamma": 0.0},
        },
        "weights": {"aux": 0.5},
        "weighting": "static",          # or uncertainty | dwa | gradnorm
    })
    total = mixture(focal={"logits": x, "targets": y}, aux=(x2, y2))

See ``docs/mixtures.md`` and :mod:`losskit_plugins.mixture.weighting` for the formulas.
"""

from __future__ import annotations

import losskit
from losskit.bench import BenchSpec
from losskit_plugins.mixture.baselines import terms_by_hand
from losskit_plugins.mixture.cases import SIZES, example_inputs
from losskit_plugins.mixture.config import MixtureConfig
from losskit_plugins.mixture.loss import MixtureLoss

__all__ = ["MixtureConfig", "MixtureLoss", "register_losses"]


@losskit.hookimpl
def register_losses(register):
    """Register ``mixture``."""
    register(
        "mixture",
        MixtureLoss,
        config=MixtureConfig,
        bench=BenchSpec(
            example_inputs=example_inputs,
            sizes=SIZES,
            baselines={"terms_by_hand": terms_by_hand},
            throughput_keys=("itc.B",),
            throughput_unit="image-text pairs",
        ),
    )
