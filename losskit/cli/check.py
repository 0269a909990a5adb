"""``losskit check NAME_OR_PLUGIN``: run the conformance kit on losses."""

from __future__ import annotations

import argparse

from losskit import registry
from losskit.errors import LosskitError, UnknownLossError

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="run the conformance kit (losskit.testing.check_loss) on a loss or a plugin")
    p.add_argument("target", help="a loss name, 'plugin:loss', or a plugin name (checks all its losses)")
    p.add_argument("--seeds", type=int, default=3, help="number of random input draws per check")
    p.set_defaults(func=cmd_check)


def _targets(target: str) -> list[str]:
    reg = registry.default_registry()
    by_plugin = [s.qualified_name for s in reg.specs() if s.plugin == target]
    try:
        return [reg.get_spec(target).qualified_name]
    except UnknownLossError:
        if by_plugin:
            return by_plugin
        raise


def cmd_check(args: argparse.Namespace) -> int:
    from losskit.testing import check_loss

    status = 0
    for name in _targets(args.target):
        try:
            report = check_loss(name, seeds=args.seeds, raise_on_failure=False)
        except LosskitError as exc:  # e.g. a raising input factory: one line, then the next loss
            print(f"{name}: FAILED: {str(exc).removeprefix(f'{name}: ')}")
            status = 1
            continue
        print(report.render())
        status |= int(not report.ok)
    return status
