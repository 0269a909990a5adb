"""``losskit list``, ``show``, ``plugins`` and ``schema``: what the registry holds."""

from __future__ import annotations

import argparse
import fnmatch
import inspect
import json
from typing import Any

import yaml

from losskit import registry

__all__ = ["add_parser", "call_signature"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered losses")
    p.add_argument("pattern", nargs="?", help="glob or substring to filter names, e.g. 'clip*'")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="describe one loss: summary, config fields, example config")
    p.add_argument("name")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("plugins", help="list plugins with their distribution, version and status")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--check", action="store_true", help="exit with status 1 if any plugin failed to load")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("schema", help="JSON Schema of one loss's config, or of all (for editor completion)")
    p.add_argument("name", nargs="?")
    p.add_argument("--indent", type=int, default=2)
    p.set_defaults(func=cmd_schema)


def _matches(name: str, pattern: str | None) -> bool:
    if not pattern:
        return True
    return fnmatch.fnmatch(name, pattern) if any(c in pattern for c in "*?[") else pattern in name


def cmd_list(args: argparse.Namespace) -> int:
    reg = registry.default_registry()
    rows = []
    for name in reg.list_losses():
        if not _matches(name, args.pattern):
            continue
        spec = reg.get_spec(name)
        rows.append({"name": name, "qualified_name": spec.qualified_name, "plugin": spec.plugin, "summary": spec.summary})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['summary']}  [{r['qualified_name']}]")
    return 0


def _bounds(info: dict[str, Any]) -> str:
    marks = {"exclusiveMinimum": ">", "minimum": ">=", "exclusiveMaximum": "<", "maximum": "<="}
    parts = [f"{sym} {info[key]}" for key, sym in marks.items() if key in info]
    if "enum" in info:
        parts.append("one of " + ", ".join(map(str, info["enum"])))
    return ", ".join(parts)


def _field_rows(schema: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for name, info in schema.get("properties", {}).items():
        if name == "name":
            continue
        branches = info.get("anyOf", [info])
        types = "|".join(b.get("type", b.get("$ref", "?").split("/")[-1]) for b in branches)
        bounds = "; ".join(filter(None, (_bounds(b) for b in branches)))
        default = json.dumps(info.get("default")) if "default" in info else "(required)"
        rows.append((name, types, default, bounds, info.get("description", "")))
    return rows


def call_signature(loss_class: type) -> str:
    """``loss(image_features, text_features, *, group_ids=None)``: how the loss is called.

    Read from ``loss_class.compute`` (``forward`` takes the same arguments), without
    ``self`` and without annotations.
    """
    sig = inspect.signature(loss_class.compute)
    params = [p.replace(annotation=inspect.Parameter.empty) for p in list(sig.parameters.values())[1:]]
    return "loss" + str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def _print_fields(spec: Any) -> None:
    print("\nconfig fields:")
    try:
        schema = spec.config_class.model_json_schema()
    except Exception as exc:  # noqa: BLE001 - e.g. a Callable field: pydantic has no schema for it
        print(f"  (no JSON Schema: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})")
        for name, field in spec.config_class.model_fields.items():
            print(f"  {name} = {field.default!r}\n      {field.description or ''}")
        return
    for name, types, default, bounds, desc in _field_rows(schema):
        extra = f" [{bounds}]" if bounds else ""
        print(f"  {name}: {types} = {default}{extra}\n      {desc}")


def cmd_show(args: argparse.Namespace) -> int:
    reg = registry.default_registry()
    spec = reg.get_spec(args.name)
    print(f"{spec.name}  ({spec.qualified_name}, plugin {spec.plugin}{', bundled' if spec.bundled else ''})")
    print(f"  {spec.summary}")
    print(f"  class: {spec.loss_class.__module__}.{spec.loss_class.__qualname__}")
    print(f"  call:  {call_signature(spec.loss_class)}  (loss.compute(...) takes the same and returns a LossOutput)")
    _print_fields(spec)
    example = {"name": spec.name if reg.list_losses().count(spec.name) else spec.qualified_name}
    try:
        example.update(spec.config_class().model_dump(mode="json"))
    except Exception:  # a config with required fields has no default example
        pass
    print("\nexample config (YAML):")
    print("  " + yaml.safe_dump(example, sort_keys=False).replace("\n", "\n  ").rstrip())
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    infos = registry.plugin_infos()
    if args.json:
        print(json.dumps([vars(i) for i in infos], indent=2))
    else:
        for i in infos:
            dist = f"{i.distribution} {i.version}" if i.distribution else "(not installed)"
            line = f"{i.name:<14} {dist:<24} {i.status:<9}"
            line += f" {i.error}" if i.error else f" {', '.join(i.losses)}"
            print(line)
    failed = [i for i in infos if i.status == "failed"]
    return 1 if (args.check and failed) else 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(registry.config_schema(args.name), indent=args.indent))
    return 0
