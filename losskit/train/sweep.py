"""``losskit train --sweep FIELD=V1,V2,...``: short runs one after another, then a comparison.

Several ``--sweep`` options run every combination. Each run gets its own folder
``SWEEP_DIR/<field>=<value>[,...]``; the sweep folder gets ``sweep.json``, ``sweep.md``
(a table of final recalls, loss and the learned values of learnable loss fields, e.g.
the temperature each run ended with) and ``sweep.png``.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from losskit.errors import ConfigError
from losskit.train.config import TrainConfig, apply_overrides, parse_assignment, validate_train_config
from losskit.train.loop import train
from losskit.train.rundir import prepare_new_run
from losskit.train.sweep_plot import plot_sweep

__all__ = ["parse_sweep", "run_sweep"]


def parse_sweep(spec: str) -> tuple[str, list[Any]]:
    """``"loss.temperature=0.05,0.1"`` -> ``("loss.temperature", [0.05, 0.1])`` (values read as YAML)."""
    path, _ = parse_assignment(spec.split(",", 1)[0])
    raw = spec.split("=", 1)[1]
    values = [parse_assignment(f"{path}={v}")[1] for v in raw.split(",") if v.strip()]
    if not values:
        raise ConfigError([(path, f"--sweep needs at least one value, got {spec!r}")])
    return path, values


def _label(assignments: list[tuple[str, Any]]) -> str:
    return ",".join(f"{path}={value}" for path, value in assignments)


def _configs(config: TrainConfig, specs: list[str], sweep_dir: Path, overwrite: bool) -> list[tuple[list[Any], TrainConfig]]:
    """Every combination validated, and its run folder checked, before the first run starts."""
    axes = [parse_sweep(s) for s in specs]
    base = config.model_dump(mode="json")
    combos = [list(zip([p for p, _ in axes], values)) for values in itertools.product(*[v for _, v in axes])]
    configs = []
    for combo in combos:
        overrides = [f"{p}={json.dumps(v)}" for p, v in combo]
        data = apply_overrides(base, overrides)
        data["run_dir"] = str(sweep_dir / _label(combo).replace("/", "_"))
        run_config = validate_train_config(data)
        prepare_new_run(Path(data["run_dir"]), overwrite=overwrite, delete=False)
        configs.append((combo, run_config))
    return configs


def run_sweep(config: TrainConfig, specs: list[str], *, quiet: bool = False, overwrite: bool = False) -> list[dict[str, Any]]:
    """Run one training per combination of the swept values; returns the comparison rows.

    ``overwrite``: runs may replace the run files of existing run folders of the sweep.
    """
    sweep_dir = Path(config.run_dir) if config.run_dir else Path("runs") / datetime.now().strftime("sweep-%Y%m%d-%H%M%S")
    configs = _configs(config, specs, sweep_dir, overwrite)
    rows = []
    for combo, run_config in configs:
        if not quiet:
            print(f"=== sweep run {len(rows) + 1}/{len(configs)}: {_label(combo)}", flush=True)
        result = train(run_config, quiet=quiet, overwrite=overwrite)
        rows.append(
            {"run": _label(combo), "run_dir": str(result.run_dir), "values": dict(combo), "final_loss": result.final_loss,
             "learned": result.learned, **result.after}
        )  # fmt: skip
    _write(sweep_dir, rows)
    if not quiet:
        print((sweep_dir / "sweep.md").read_text())
    return rows


def _write(sweep_dir: Path, rows: list[dict[str, Any]]) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "sweep.json").write_text(json.dumps(rows, indent=2))
    keys = [k for k in rows[0] if k.startswith(("i2t_", "t2i_"))]
    learned = list(dict.fromkeys(k for r in rows for k in r["learned"]))
    header = ["run", "final loss", *keys, *(f"learned {k}" for k in learned)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in rows:
        cells = [row["run"], f"{row['final_loss']:.4f}", *(f"{row[k]:.3f}" for k in keys)]
        cells += [f"{row['learned'][k]:.4g}" if k in row["learned"] else "" for k in learned]
        lines.append("| " + " | ".join(cells) + " |")
    (sweep_dir / "sweep.md").write_text("\n".join(lines) + "\n")
    plot_sweep(rows, sweep_dir / "sweep.png")
