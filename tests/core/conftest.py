"""Fixtures for core tests: real installed-metadata plugins built in a temporary site dir."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from losskit.registry import Registry

#: a minimal valid plugin body; ``{name}`` is the loss name it registers
PLUGIN_TEMPLATE = '''
import torch
from pydantic import Field
import losskit
from losskit.loss import reduce


class SquareConfig(losskit.LossConfig):
    scale: float = Field(1.0, gt=0, description="multiplier")


class SquareLoss(losskit.Loss[SquareConfig]):
    """Mean squared value, times scale."""

    config_class = SquareConfig

    def compute(self, x):
        return losskit.LossOutput(loss=reduce(self.config.scale * x.float() ** 2, self.config.reduction))


@losskit.hookimpl
def register_losses(register):
    for name in {names!r}:
        register(name, SquareLoss, config=SquareConfig)
'''


class SiteDir:
    """A directory on ``sys.path`` holding fake installed distributions with real metadata."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add_dist(self, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        eps = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text("[losskit]\n" + eps)
        for module, source in modules.items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source))
            self.modules.append(module)
        importlib.invalidate_caches()

    @staticmethod
    def template(names: list[str]) -> str:
        """Source of a valid plugin module registering ``names``."""
        return PLUGIN_TEMPLATE.format(names=names)

    def add_plugin(self, dist: str, plugin: str, names: list[str], *, module: str | None = None, source: str | None = None) -> None:
        """A distribution ``dist`` with entry point ``plugin`` registering the losses ``names``."""
        module = module or f"{dist.replace('-', '_')}_mod"
        self.add_dist(dist, "1.2.3", {plugin: module}, {module: source or self.template(names)})


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SiteDir]:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    s = SiteDir(root)
    yield s
    for module in s.modules:
        sys.modules.pop(module, None)


@pytest.fixture
def fresh() -> Callable[[], Registry]:
    """Factory of new registries that load entry points like the default one."""
    return Registry
