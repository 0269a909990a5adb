"""``losskit train --sweep FIELD=V1,V2,...``: short runs one after another, then a comparison.

Several ``--sweep`` options run every combination. Each run gets its own folder
``SWEEP_DIR/<field>=<value>[,...]``; the sweep folder gets ``sweep.json``, ``sweep.md``
(a table of final recalls and loss) and ``sweep.png``.
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

__all__ = ["parse_sweep", "run_sweep"]


def parse_sweep(spec: str) -> tuple[str, list[Any]]:
    """``"loss.temperature=0.05,0.1"`` -> ``("loss.temperature", [0.05, 0.1])`` (values read as YAML)."""
    path, _ = parse_assignment(spec)
    raw = spec.split("=", 1)[1]
    values = [parse_assignment(f"{path}={v}")[1] for v in raw.split(",") if v.strip()]
    if not values:
        raise ConfigError([(path, f"--sweep needs at least one value, got {spec!r}")])
    return path, values


def _label(assignments: list[tuple[str, Any]]) -> str:
    return ",".join(f"{path}={value}" for path, value in assignments)


def run_sweep(config: TrainConfig, specs: list[str], *, quiet: bool = False) -> list[dict[str, Any]]:
    """Run one training per combination of the swept values; returns the comparison rows."""
    axes = [parse_sweep(s) for s in specs]
    sweep_dir = Path(config.run_dir) if config.run_dir else Path("runs") / datetime.now().strftime("sweep-%Y%m%d-%H%M%S")
    base = config.model_dump(mode="json")
    combos = [list(zip([p for p, _ in axes], values)) for values in itertools.product(*[v for _, v in axes])]
    configs = []
    for combo in combos:  # validate every combination before the first run starts
        overrides = [f"{p}={json.dumps(v)}" for p, v in combo]
        data = apply_overrides(base, overrides)
        data["run_dir"] = str(sweep_dir / _label(combo).replace("/", "_"))
        configs.append((combo, validate_train_config(data)))
    rows = []
    for combo, run_config in configs:
        if not quiet:
            print(f"=== sweep run {len(rows) + 1}/{len(configs)}: {_label(combo)}", flush=True)
        result = train(run_config, quiet=quiet)
        rows.append(
            {"run": _label(combo), "run_dir": str(result.run_dir), "values": dict(combo), "final_loss": result.final_loss, **result.after}
        )
    _write(sweep_dir, rows)
    if not quiet:
        print((sweep_dir / "sweep.md").read_text())
    return rows


def _write(sweep_dir: Path, rows: list[dict[str, Any]]) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "sweep.json").write_text(json.dumps(rows, indent=2))
    keys = [k for k in rows[0] if k.startswith(("i2t_", "t2i_"))]
    lines = ["| run | final loss | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for row in rows:
        lines.append(f"| {row['run']} | {row['final_loss']:.4f} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")
    (sweep_dir / "sweep.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(rows)), 3.8))
    xs = range(len(rows))
    width = 0.38
    ax.bar([x - width / 2 for x in xs], [r["i2t_r1"] for r in rows], width, label="image→text R@1")
    ax.bar([x + width / 2 for x in xs], [r["t2i_r1"] for r in rows], width, label="text→image R@1")
    ax.set_xticks(list(xs), [r["run"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("final validation recall@1")
    ax.legend()
    fig.tight_layout()
    fig.savefig(sweep_dir / "sweep.png", dpi=100)
    plt.close(fig)
