"""The surface of ``bbox`` around the loss: its schema, its docs page, its import cost."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import losskit


def test_schema_describes_every_field() -> None:
    properties = losskit.config_schema("bbox")["properties"]
    fields = losskit.get_spec("bbox").config_class.model_fields
    assert {"box_format", "l1_weight", "smooth_l1_beta", "iou_loss", "iou_weight", "eps", "degenerate"} <= set(fields)
    for field in fields:
        assert properties[field].get("description"), f"{field} has no description in the schema"


def test_docs_page_has_a_row_for_every_field_with_its_default() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "boxes.md").read_text(encoding="utf-8")
    for field, info in losskit.get_spec("bbox").config_class.model_fields.items():
        row = re.search(rf"^\| `{field}` \| ([^|]+) \|", page, re.MULTILINE)
        assert row, f"docs/boxes.md: no config table row for {field}"
        shown, default = row.group(1).strip("`"), info.default
        if isinstance(default, float):
            assert float(shown) == default, (field, shown)
        else:  # strings as written, None / booleans as in YAML and JSON
            assert shown == (default if isinstance(default, str) else json.dumps(default)), (field, shown)


def imported_at_module_level(tree: ast.AST) -> set[str]:
    """Top-level package names a module imports when it is loaded (function bodies run later)."""
    names: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        names |= imported_at_module_level(node)
    return names


@pytest.mark.parametrize("module", sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "plugins" / "boxes").glob("*.py")))
def test_box_modules_import_torchvision_lazily(module: str) -> None:
    # torchvision costs seconds at CLI start-up: only the xywh/cxcywh conversion and the
    # bench baselines import it, inside the functions that use it
    source = (Path(__file__).resolve().parents[2] / "plugins" / "boxes" / f"{module}.py").read_text(encoding="utf-8")
    assert "torchvision" not in imported_at_module_level(ast.parse(source))
