"""The GPU suite: every ``benchmarks/gpu_<part>.py`` script in one run, one JSON.

Each part script (``gpu_tokens.py``, ``gpu_contrastive.py``, ``gpu_boxes_mixture.py``)
times losskit against the anchors that are importable on the machine and writes
``gpu-<part>-<device>.json`` and prints its table; this script runs them one after
another in this process and merges their results into ``gpu-suite-<device>.json``. A part
that fails is recorded under ``failed`` and the others still run.

On the GPU machine (recipe: ../shared/gpu/README.md)::

    python3 benchmarks/gpu_suite.py --out RESULTS_DIR

On a CPU, ``--device cpu --quick`` runs every part at tiny sizes (a smoke test of the
scripts, not a measurement).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def part_scripts() -> list[Path]:
    """The part scripts next to this file, in name order."""
    return sorted(p for p in HERE.glob("gpu_*.py") if p.name not in {"gpu_suite.py", "gpu_common.py"})


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for the JSON and tables")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    parser.add_argument("--only", nargs="*", default=None, help="part names to run (e.g. tokens contrastive)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    merged: dict[str, object] = {"parts": {}, "failed": {}}
    device_type = "cuda" if args.device.startswith("cuda") else args.device
    for path in part_scripts():
        part = path.stem.removeprefix("gpu_")
        if args.only is not None and part not in args.only:
            continue
        started = time.perf_counter()
        extra = ["--quick"] if args.quick else []
        print(f"== {part}", flush=True)
        try:
            code = _load(path).main(["--out", str(args.out), "--device", args.device, *extra])
        except Exception as exc:  # one broken part must not cost the others their (scarce) GPU time
            merged["failed"][part] = f"{type(exc).__name__}: {exc}"  # type: ignore[index]
            print(f"!! {part} failed: {exc}", flush=True)
            continue
        if isinstance(code, int) and code:  # parts return an exit status or their result
            merged["failed"][part] = f"exit status {code}"  # type: ignore[index]
            continue
        result = args.out / f"gpu-{part}-{device_type}.json"
        if not result.exists():
            merged["failed"][part] = f"wrote no {result.name}"  # type: ignore[index]
            continue
        merged["parts"][part] = json.loads(result.read_text()) | {"wall_s": time.perf_counter() - started}  # type: ignore[index]
    path = args.out / f"gpu-suite-{device_type}.json"
    path.write_text(json.dumps(merged, indent=1, default=str) + "\n")
    print(f"wrote {path}", flush=True)
    return 1 if merged["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
