"""losskit: a plugin-registry loss-function toolkit for image–text alignment and multimodal training.

Quick start::

    import losskit
    loss_fn = losskit.build("clip", temperature=0.05)
    loss = loss_fn(image_features, text_features)   # [B, D], [B, D] -> scalar

See ``losskit list`` for every registered loss and docs/ for the guides.
"""

from __future__ import annotations

from losskit import errors
from losskit.config import LossConfig
from losskit.curriculum import Curriculum
from losskit.files import load_config
from losskit.hooks import hookimpl, hookspec
from losskit.loss import Loss, LossOutput
from losskit.registry import (
    build,
    config_schema,
    config_to_dict,
    get_spec,
    list_losses,
    plugin_infos,
    temporary_plugin,
)
from losskit.spec import Inputs, LossSpec

__version__ = "0.1.0"

__all__ = [
    "Curriculum",
    "Inputs",
    "Loss",
    "LossConfig",
    "LossOutput",
    "LossSpec",
    "build",
    "config_schema",
    "config_to_dict",
    "errors",
    "get_spec",
    "hookimpl",
    "hookspec",
    "list_losses",
    "load_config",
    "plugin_infos",
    "temporary_plugin",
]
