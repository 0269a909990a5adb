"""Reading annotation files into ``(image, caption, where)`` rows, with errors that name the file.

- COCO: ``captions_*.json`` with ``images: [{id, file_name}]`` and
  ``annotations: [{image_id, caption}]``.
- Manifest: ``.jsonl`` (one ``{"image": ..., "caption": ...}`` per line) or ``.csv``
  (header ``image,caption``).

Every file is UTF-8 text; every image name and caption a string (``null`` is refused,
not turned into the text ``"None"``). ``where`` locates a row for later messages
(``file:line`` or ``file: annotations[3]``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from losskit.errors import ConfigError
from losskit.files import read_text

__all__ = ["Row", "coco_rows", "manifest_rows"]

#: ``(image name, caption, where)``
Row = tuple[str, str, str]


def _string(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str):
        got = "null" if value is None else f"{type(value).__name__} {value!r}"
        raise ConfigError([(where, f"{field}: expected a string, got {got}")])
    return value


def coco_rows(path: Path) -> list[Row]:
    """The caption rows of a COCO captions file; ``ConfigError`` naming the file and entry."""
    try:
        data = json.loads(read_text(path, "data file"))
    except json.JSONDecodeError as exc:
        raise ConfigError([(f"{path}:{exc.lineno}:{exc.colno}", f"invalid JSON: {exc.msg}")]) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise ConfigError([(str(path), "expected a COCO captions file with lists 'images' and 'annotations'")])
    files: dict[Any, str] = {}
    for i, image in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        if not isinstance(image, dict) or "id" not in image:
            raise ConfigError([(where, "expected an object with 'id' and 'file_name'")])
        files[image["id"]] = _string(image.get("file_name"), where, "file_name")
    rows = []
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]"
        if not isinstance(ann, dict) or ann.get("image_id") not in files:
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            raise ConfigError([(where, f"image_id {image_id!r} is not the id of an entry of 'images'")])
        rows.append((files[ann["image_id"]], _string(ann.get("caption"), where, "caption").strip(), where))
    return rows


def _csv_rows(path: Path) -> list[Row]:
    reader = csv.DictReader(io.StringIO(read_text(path, "data file"), newline=""))
    if reader.fieldnames is None or not {"image", "caption"} <= set(reader.fieldnames):
        raise ConfigError([(str(path), f"expected a CSV header with image,caption, got {reader.fieldnames}")])
    rows = []
    for row in reader:
        where = f"{path}:{reader.line_num}"
        rows.append((_string(row["image"], where, "image"), _string(row["caption"], where, "caption"), where))
    return rows


def manifest_rows(path: Path) -> list[Row]:
    """The rows of a ``.jsonl`` or ``.csv`` manifest; ``ConfigError`` naming the file and line."""
    if path.suffix.lower() == ".csv":
        return _csv_rows(path)
    rows = []
    for number, line in enumerate(read_text(path, "data file").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or "image" not in row or "caption" not in row:
            raise ConfigError([(where, 'expected a JSON object {"image": ..., "caption": ...}')])
        rows.append((_string(row["image"], where, "image"), _string(row["caption"], where, "caption"), where))
    return rows
