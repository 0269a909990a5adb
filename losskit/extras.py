"""Optional dependencies of the tools: ``losskit train`` and ``losskit bench`` need the ``tools`` extra.

The library (registry, configs, every loss) needs only torch, torchvision, numpy,
pluggy, pydantic and PyYAML. Plotting (matplotlib), image decoding (Pillow) and
progress bars (tqdm) come with ``pip install "losskit[tools]"``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from losskit.errors import MissingExtraError

__all__ = ["TOOLS_EXTRA", "PIP_NAMES", "require"]

TOOLS_EXTRA = "tools"

#: import name -> distribution name, where they differ
PIP_NAMES: dict[str, str] = {"PIL": "Pillow"}


def require(what: str, modules: Iterable[str], *, extra: str = TOOLS_EXTRA) -> None:
    """Import ``modules``; raise :class:`MissingExtraError` naming the ``pip install`` when one is missing.

    Args:
        what: who needs them, for the message (e.g. ``"losskit train"``).
        modules: import names, e.g. ``("tqdm", "matplotlib")``.
        extra: the losskit extra that installs them.
    """
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(PIP_NAMES.get(module, module))
    if missing:
        raise MissingExtraError(
            f"{what} needs {', '.join(missing)}, from the losskit[{extra}] extra: "
            f"pip install \"losskit[{extra}]\" (in a clone: pip install -e \".[{extra}]\")"
        )
