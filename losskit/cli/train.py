"""``losskit train``: train the reference dual encoder (see docs/trainer.md).

The trainer (``losskit.train``, torch-heavy) is imported only when the command runs.
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an image-text dual encoder with any registered loss (built-in data by default)",
        description="Train an image-text dual encoder. With no arguments: the built-in generated dataset, "
        "the 'clip' loss, a compact CNN; about 2-3 minutes on 2 CPU cores. Multi-GPU: "
        "torchrun --nproc_per_node N -m losskit train ...",
    )
    p.add_argument("--config", help="YAML or JSON TrainConfig file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field, e.g. --set optim.lr=3e-4 (repeatable; value read as YAML)",
    )
    p.add_argument("assignments", nargs="*", metavar="FIELD=VALUE", help="more overrides, same as --set")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest usable checkpoint")
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="FIELD=V1,V2,...",
        help="run one short run per value (several --sweep: every combination) and compare them",
    )
    p.add_argument("--run-dir", help="output folder (default: runs/train-<timestamp>; for --sweep, the sweep folder)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from losskit.train.config import load_train_config
    from losskit.train.loop import train
    from losskit.train.sweep import run_sweep

    overrides = [*args.overrides, *args.assignments]
    if args.resume:
        if args.config or overrides or args.sweep:
            raise ValueError("--resume takes the config from the run directory; drop --config/--set/--sweep")
        train(None, resume=args.resume)  # type: ignore[arg-type]
        return 0
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    config = load_train_config(args.config, overrides)
    if args.sweep:
        run_sweep(config, args.sweep)
    else:
        train(config)
    return 0
