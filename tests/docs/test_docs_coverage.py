"""The docs cover what losskit has: every error type, every CLI command, every bundled loss."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import losskit
import losskit.errors
from losskit.cli import COMMANDS

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def _all_docs() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.rglob("*.md")))


@pytest.mark.parametrize("name", losskit.errors.__all__)
def test_troubleshooting_explains_every_error_type(name: str) -> None:
    page = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    headings = [line for line in page.splitlines() if line.startswith("#")]
    assert any(name in h for h in headings), f"docs/troubleshooting.md has no section for losskit.errors.{name}"
    section = page.split(next(h for h in headings if name in h), 1)[1]
    assert "**Cause.**" in section and "**Fix.**" in section


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_cli_command_is_documented(command: str) -> None:
    assert re.search(rf"losskit {command}\b", _all_docs()), f"no page shows `losskit {command}`"


def test_every_bundled_loss_is_documented() -> None:
    bundled = sorted({s.name for s in losskit.registry.default_registry().specs() if s.bundled})
    assert bundled, "no bundled loss registered"
    text = _all_docs()
    missing = [name for name in bundled if f"`{name}`" not in text]
    assert not missing, f"bundled losses no docs page mentions: {missing}"
