"""``losskit train``: train the reference dual encoder (see docs/trainer.md).

The trainer (``losskit.train``, torch-heavy) is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["add_parser"]

_EPILOG = """examples:
  losskit train                                   the built-in data, loss clip, about 2-3 minutes on 2 CPU cores
  losskit train loss=siglip steps=300             choose the loss (same as loss.name=siglip) and override fields
  losskit train --set loss.temperature=0.05       a field of the configured loss (default: clip)
  losskit train --config coco.yaml --run-dir runs/coco
  losskit train --resume runs/coco                continue a run with its own config.yaml
  losskit train --sweep loss.temperature=0.05,0.1 --set steps=300
  torchrun --nproc_per_node N -m losskit train ...   multi-GPU / multi-node
"""


class _TrainParser(argparse.ArgumentParser):
    """Takes bare ``field=value`` arguments anywhere, also after an option (argparse alone takes one run of them)."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> tuple[Any, list[str]]:
        namespace, rest = super().parse_known_args(args, namespace)
        extra = [a for a in rest if "=" in a and not a.startswith("-")]
        namespace.assignments = [*(namespace.assignments or []), *extra]
        return namespace, [a for a in rest if a not in extra]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an image-text dual encoder with any registered loss (built-in data by default)",
        description="Train an image-text dual encoder. With no arguments: the built-in generated dataset, "
        "the 'clip' loss, a compact CNN. Every config field can be set with FIELD=VALUE (dotted paths, "
        "values read as YAML); loss=NAME chooses the loss (`losskit list`).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.__class__ = _TrainParser  # sub.add_parser builds the parser's class; this one only adds the step above
    p.add_argument("--config", help="YAML or JSON TrainConfig file (with a `loss:` section)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field, e.g. --set optim.lr=3e-4 or --set loss=siglip (repeatable; value read as YAML)",
    )
    p.add_argument(
        "assignments", nargs="*", metavar="FIELD=VALUE", help="more overrides, same as --set (e.g. loss=siglip steps=300)"
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (with its own config.yaml) from its newest usable checkpoint")
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="FIELD=V1,V2,...",
        help="run one short run per value (several --sweep: every combination) and compare them",
    )
    p.add_argument("--run-dir", help="output folder (default: runs/train-<timestamp>; for --sweep, the sweep folder)")
    p.add_argument(
        "--overwrite", action="store_true", help="start a new run in a non-empty --run-dir, deleting the run files there"
    )
    p.set_defaults(func=cmd_train)


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Warnings (e.g. a skipped checkpoint) as one ``losskit train: warning: ...`` line each."""
    original = warnings.formatwarning
    warnings.formatwarning = lambda message, *args, **kwargs: f"losskit train: warning: {message}\n"
    try:
        yield
    finally:
        warnings.formatwarning = original


def cmd_train(args: argparse.Namespace) -> int:
    from losskit.train.config import load_train_config
    from losskit.train.loop import train
    from losskit.train.sweep import run_sweep

    overrides = [*args.overrides, *args.assignments]
    with _one_line_warnings():
        if args.resume:
            if args.config or overrides or args.sweep or args.run_dir or args.overwrite:
                raise ValueError(
                    "--resume continues the run with its own config.yaml; drop --config/--set/--sweep/--run-dir/--overwrite"
                )
            train(None, resume=args.resume)
            return 0
        if args.run_dir:
            overrides.append(f"run_dir={json.dumps(args.run_dir)}")  # a quoted YAML string
        config = load_train_config(args.config, overrides)
        if args.sweep:
            run_sweep(config, args.sweep, overwrite=args.overwrite)
        else:
            train(config, overwrite=args.overwrite)
    return 0
