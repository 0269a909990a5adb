"""CPU peak RSS of ``clip`` over a run of steps, not one: tiled (``chunk_size``) vs open_clip's dense loss.

Each configuration runs in its own fresh Python process with glibc's default allocator
settings (what a training script gets): it builds the inputs, runs one tiny warm-up step
(lazy imports, thread pools), reads ``VmRSS``, then runs
``--steps`` forward+backward steps and records ``VmHWM`` (the process's peak RSS) after
each; the figure is that peak minus the RSS before the first step, so allocator churn that
makes the peak climb from call to call shows in the per-step curve::

    python benchmarks/contrastive_rss_steps.py                    # B = 16384, D = 64, 20 steps
    python benchmarks/contrastive_rss_steps.py --quick --out /tmp/rss

Configurations: ``open_clip`` (open_clip's ``ClipLoss`` on normalised features, or the
identical ``dense_ce`` formula when open_clip is not installed; named in the JSON) and
``losskit`` ``clip`` with each ``--chunks`` size. The logit tiles are ``chunk x B``
whatever ``D`` is, so a small ``D`` keeps the run short without changing what is
measured. Writes ``DIR/contrastive_rss_steps.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
_STATUS = Path("/proc/self/status")


def _kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in {_STATUS}")


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in this (fresh) process; return its per-step peaks."""
    import torch

    import losskit
    from losskit_plugins.contrastive.baselines import dense_ce_clip, open_clip_available, open_clip_clip

    torch.set_num_threads(spec["threads"])
    g = torch.Generator().manual_seed(0)
    img = torch.randn(spec["batch"], spec["dim"], generator=g).requires_grad_()
    txt = (img.detach() + torch.randn(spec["batch"], spec["dim"], generator=g)).requires_grad_()
    impl = "losskit"
    if spec["chunk"] is None:
        impl = "open_clip" if open_clip_available() else "dense_ce"
        fn = open_clip_clip if impl == "open_clip" else dense_ce_clip
    else:
        fn = losskit.build("clip", chunk_size=spec["chunk"], distributed="none")
    small = torch.randn(4, spec["dim"], requires_grad=True)
    fn(small, small.detach()).backward()  # warm-up: lazy imports and thread pools are not counted
    before = _kib("VmRSS")
    peaks = []
    for step in range(spec["steps"]):
        fn(img, txt).backward()
        img.grad = txt.grad = None
        peaks.append((_kib("VmHWM") - before) * 1024)
        print(f"{spec['label']}: step {step + 1} peak {peaks[-1] / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    return {**spec, "impl": impl, "peak_bytes_after_step": peaks, "peak_bytes": max(peaks)}


def _run(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc defaults
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], stdout=subprocess.PIPE, text=True, env=env, timeout=timeout
    )  # the child's per-step progress goes to this process's stderr
    if proc.returncode != 0:
        return {**spec, "error": f"exit {proc.returncode} (its stderr is above)"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(rows: list[dict[str, Any]], dense_peak: int | None) -> str:
    lines = ["| configuration | peak after step 1 | after 5 | after last | vs dense |", "|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | error: {r['error']} | | | |")
            continue
        p = r["peak_bytes_after_step"]
        mib = [f"{v / 2**20:.0f} MiB" for v in (p[0], p[min(4, len(p) - 1)], p[-1])]
        ratio = f"{100 * r['peak_bytes'] / dense_peak:.1f}%" if dense_peak else "n/a"
        lines.append(f"| {r['label']} | {' | '.join(mib)} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16384)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument(
        "--dense-steps", type=int, default=3,
        help="steps of the dense baseline (its peak is flat; fewer steps can only lower it, so the ratio is conservative)",
    )
    ap.add_argument("--chunks", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="B = 1024, 5 steps (seconds; a smoke run)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        result = _child(json.loads(args.child))
        print(json.dumps(result))
        return result
    batch, steps = (1024, 5) if args.quick else (args.batch, args.steps)
    base = {"batch": batch, "dim": args.dim, "steps": steps, "threads": args.threads}
    specs = [{**base, "steps": min(steps, args.dense_steps), "chunk": None, "label": "dense (open_clip ClipLoss)"}]
    specs += [{**base, "chunk": c, "label": f"losskit clip, chunk_size={c}"} for c in args.chunks]
    rows = [_run(s, args.timeout) for s in specs]
    dense_peak = rows[0].get("peak_bytes")
    for r in rows[1:]:
        if dense_peak and "peak_bytes" in r:
            r["fraction_of_dense"] = r["peak_bytes"] / dense_peak
    report = {"benchmark": "contrastive_rss_steps", "config": base, "results": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "contrastive_rss_steps.json").write_text(json.dumps(report, indent=2) + "\n")
    print(_table(rows, dense_peak))
    return report


if __name__ == "__main__":
    main()
