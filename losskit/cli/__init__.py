"""The ``losskit`` command line: ``losskit list | show | plugins | schema | check | bench | train``.

Each command lives in its own module exposing ``add_parser(subparsers)``; the module
is imported only when listed in :data:`COMMANDS`, so a heavy command (``train``)
costs nothing to the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from losskit.errors import LosskitError
from losskit.extras import require

__all__ = ["COMMANDS", "NEEDS", "main"]

#: command -> modules it imports whatever its options (from the ``tools`` extra, see :mod:`losskit.extras`)
NEEDS: dict[str, tuple[str, ...]] = {"train": ("tqdm", "matplotlib", "PIL")}

#: command name -> module (relative to this package) that defines it
COMMANDS: dict[str, str] = {
    "list": ".catalog",
    "show": ".catalog",
    "plugins": ".catalog",
    "schema": ".catalog",
    "check": ".check",
    "train": ".train",
    "bench": ".bench",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command's sub-parser."""
    parser = argparse.ArgumentParser(
        prog="losskit",
        description="Plugin-registry loss functions for image-text alignment and multimodal training.",
    )
    from losskit import __version__

    parser.add_argument("--version", action="version", version=f"losskit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    done: set[str] = set()
    for module_name in COMMANDS.values():
        if module_name in done:
            continue
        done.add(module_name)
        importlib.import_module(module_name, __name__).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failure, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        require(f"losskit {args.command}", NEEDS.get(args.command, ()))
        return int(args.func(args) or 0)
    except LosskitError as exc:
        print(f"losskit {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError) as exc:
        # bad values reaching the library (e.g. a bench size) are user errors here
        print(f"losskit {args.command}: error: {exc}", file=sys.stderr)
        return 1
