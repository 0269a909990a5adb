"""What a run reports: evaluations during a default run, any valid eval.ks end to end, sweep tables and plots."""

import pytest
import yaml

from losskit.cli import main
from losskit.train.config import validate_train_config
from losskit.train.loop import train
from losskit.train.metrics import read_metrics
from losskit.train.sweep import run_sweep
from losskit.train.sweep_plot import sweep_figure


def test_default_run_evaluates_during_training(tmp_path, tiny, test_loss):
    config = tiny(tmp_path / "run", steps=10)
    config.pop("eval", None)
    train(validate_train_config(config), quiet=True)
    steps = [r["step"] for r in read_metrics(tmp_path / "run/metrics.jsonl") if "eval" in r]
    assert steps == [0, 2, 4, 6, 8, 10]  # before, four times during the run, at the end


@pytest.mark.parametrize("ks", [[5], [10, 2], [1]])
def test_every_valid_ks_works_end_to_end(tmp_path, tiny, test_loss, ks, capsys):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny(tmp_path / "run", steps=2, eval={"ks": ks})))
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 0
    out = capsys.readouterr().out
    assert [f"R@{k}" in out for k in ks] == [True] * len(ks) and (tmp_path / "run/curves.png").exists()
    final = read_metrics(tmp_path / "run/metrics.jsonl")[-1]["eval"]
    assert set(final) == {f"{d}_r{k}" for d in ("i2t", "t2i") for k in ks}


def test_sweep_reports_learned_values_and_a_readable_plot(tmp_path, tiny, test_loss):
    config = validate_train_config({**tiny(tmp_path / "sweep"), "steps": 2})
    rows = run_sweep(config, ["loss.temperature=0.05,0.2"], quiet=True)
    assert [r["values"] for r in rows] == [{"loss.temperature": 0.05}, {"loss.temperature": 0.2}]
    assert [round(r["learned"]["temperature"], 2) for r in rows] == [0.05, 0.2]  # learned by the run, near its start
    table = (tmp_path / "sweep/sweep.md").read_text().splitlines()
    assert table[0].endswith("| learned temperature |")
    assert table[2].startswith("| loss.temperature=0.05 |") and table[2].endswith(f"| {rows[0]['learned']['temperature']:.4g} |")
    first = yaml.safe_load((tmp_path / "sweep/loss.temperature=0.05/config.yaml").read_text())
    assert first["loss"]["temperature"] == 0.05 and (tmp_path / "sweep/sweep.png").exists()


def test_sweep_plot_legend_outside_the_bars_and_y_axis_around_the_values():
    rows = [{"run": f"r{i}", "i2t_r5": v, "t2i_r5": v + 0.01, "i2t_r10": 1.0, "t2i_r10": 1.0}
            for i, v in enumerate([0.90, 0.93, 0.95])]  # fmt: skip
    fig = sweep_figure(rows)
    fig.canvas.draw()
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    bars = [patch.get_window_extent(renderer) for patch in ax.patches]
    assert len(bars) == 6 and not any(legend.overlaps(b) for b in bars)
    low, high = ax.get_ylim()
    assert 0.8 < low < 0.9 and 0.96 < high <= 1.02 and "recall@5" in ax.get_ylabel()
