"""pyproject.toml ships every package: an editable install would hide a missing one."""

from __future__ import annotations

from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra installs tomli
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]


def test_every_core_package_is_listed_for_the_wheel() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "losskit").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert on_disk, "no packages found under losskit/"
    assert on_disk <= listed, f"packages missing from [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert setuptools["package-dir"]["losskit_plugins"] == "plugins" and "losskit_plugins" in listed
    families = {"losskit_plugins." + init.parent.name for init in (REPO / "plugins").glob("*/__init__.py")}
    assert families, "no family packages found under plugins/"
    assert families <= listed, f"plugins/ subpackages missing from [tool.setuptools] packages: {sorted(families - listed)}"
    assert not any((REPO / "plugins").glob("*/*/__init__.py")), "nested plugin packages need listing in pyproject.toml"
