"""The default `losskit train` run: wall time (start-up and evaluation included) and recalls.

Runs the command exactly as a user would (`losskit train --run-dir DIR`, plus any
`--set` given here) in a subprocess, and records wall time, the CPU time of the
process, the machine load before and after, and recall@1/5/10 before and after
training from the run's `metrics.jsonl`. Targets (issue 8): <= 180 s on 2 CPU cores and
recall@1 >= 0.9 in both directions. `--control` adds `data.shuffle_pairs=true` (the
shuffled-pairs control run, which must stay at chance).

    python benchmarks/train_default.py                     # writes benchmarks/results/train_default.json
    python benchmarks/train_default.py --control           # writes benchmarks/results/train_control.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--control", action="store_true", help="shuffled image-caption pairs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    parser.add_argument("--out", help="JSON file (default: results/train_default.json or train_control.json)")
    args = parser.parse_args()
    overrides = [*args.overrides, *(["data.shuffle_pairs=true"] if args.control else [])]
    out = Path(args.out or RESULTS / ("train_control.json" if args.control else "train_default.json"))
    run_dir = Path(tempfile.mkdtemp()) / "run"
    command = ["losskit", "train", "--run-dir", str(run_dir), *[a for o in overrides for a in ("--set", o)]]
    load_before = os.getloadavg()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"losskit train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval" in r]
    train_lines = [r for r in records if "loss" in r]
    result = {
        "benchmark": "train_control" if args.control else "train_default",
        "command": " ".join(["losskit", "train", *[a for o in overrides for a in ("--set", o)]]),
        "wall_s": wall,
        "cpu_user_s": usage.ru_utime,
        "cpu_sys_s": usage.ru_stime,
        "steps": train_lines[-1]["step"],
        "final_loss": train_lines[-1]["loss"],
        "before": evals[0]["eval"],
        "after": evals[-1]["eval"],
        "summary": done.stdout.strip().splitlines()[-12:],
        "targets": {"wall_s": "<= 180 on 2 idle CPU cores", "after.i2t_r1": ">= 0.9", "after.t2i_r1": ">= 0.9"},
        "machine": {
            "cpu_count": os.cpu_count(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    shutil.rmtree(run_dir.parent, ignore_errors=True)
    print("\n".join(result["summary"]))
    print(f"wall {wall:.1f} s, CPU {usage.ru_utime + usage.ru_stime:.1f} s, load {load_before} -> {result['machine']['loadavg_after']}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
