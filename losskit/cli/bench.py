"""``losskit bench``: time registered losses against their baselines (see docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Callable

import yaml

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time losses and their baselines: forward, forward+backward, peak memory, throughput",
        description=(
            "Time every named loss (default: all that declare example inputs) and its baselines on the same "
            "inputs: median and IQR of forward and forward+backward after warm-up, peak extra memory of one "
            "forward+backward, throughput (samples/s, tokens/s, ...), and losskit/baseline ratios."
        ),
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="loss names (short or plugin:loss); default: all")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="input dtype (default fp32)")
    p.add_argument(
        "--size",
        action="append",
        metavar="SIZE",
        help="preset (tiny|small|medium|large), KEY=N overrides on small (B=512,D=128), or both (medium,B=512); "
        "repeat the option for several sizes (default small)",
    )
    p.add_argument("--repeat", type=_at_least(1), default=5, help="measurements per timing (default 5)")
    p.add_argument("--warmup", type=_at_least(0), default=2, help="untimed calls before timing (default 2)")
    p.add_argument("--min-run-time", type=_seconds, default=0.05, help="seconds per measurement (default 0.05)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="loss config field for every named loss (value parsed as YAML), e.g. --set gamma=1.5",
    )
    p.add_argument("--no-baselines", action="store_true", help="time the losses only")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--seed", type=int, default=0, help="seed of the input generator (default 0)")
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch intra-op threads for the run (default: torch's, i.e. torch.get_num_threads())",
    )
    p.add_argument("--json", metavar="FILE", help="write results with machine info as JSON")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table instead of the text table")
    p.add_argument("--plot", metavar="FILE.png", help="write a bar chart of forward+backward times (PNG)")
    p.set_defaults(func=cmd_bench)


def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a number >= 0), got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected seconds (a finite number >= 0), got {text}")
    return value


def _config(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set: expected FIELD=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from losskit.bench import machine_info, make_report, markdown_table, plot_cases, resolve_device, run_cases, text_table
    from losskit.bench.machine import busy_warning

    device = resolve_device(args.device)  # fails early and clearly when CUDA is missing
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads: expected >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    machine = machine_info(device)  # before the run: its load average says how busy the machine was
    busy = busy_warning(machine)
    if busy:
        print(f"losskit bench: warning: {busy}", file=sys.stderr)
    cases = run_cases(
        args.names or None,
        sizes=args.size or ["small"],
        progress=not args.no_progress,
        config=_config(args.set) or None,
        dtype=args.dtype,
        device=device,
        repeat=args.repeat,
        warmup=args.warmup,
        min_run_time=args.min_run_time,
        memory=not args.no_memory,
        baselines=not args.no_baselines,
        seed=args.seed,
    )
    load = ", ".join(f"{x:g}" for x in machine.load_average) if machine.load_average else "n/a"
    title = (
        f"losskit bench: {machine.device_name} ({machine.device}), {args.dtype}, torch {machine.torch_version}, "
        f"{machine.torch_threads} thread{'s' if machine.torch_threads != 1 else ''}, load average {load} at start"
    )
    print(markdown_table(cases) if args.markdown else text_table(cases, title=title))
    if args.json:
        command = "losskit bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["bench"] else ""
        path = make_report(cases, machine, command=command or "losskit bench").write_json(args.json)
        print(f"wrote {path}", file=sys.stderr)
    if args.plot:
        print(f"wrote {plot_cases(cases, args.plot, title=title)}", file=sys.stderr)
    return 1 if any(r.status == "error" for c in cases for r in c.impls) else 0
