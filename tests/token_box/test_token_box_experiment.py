"""benchmarks/token_box_experiment.py: its box <-> token round trip and a tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "token_box_experiment.py"
_spec = importlib.util.spec_from_file_location("token_box_experiment", SCRIPT)
experiment = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(experiment)


@pytest.mark.parametrize("style", ["digits", "loc_tokens"])
def test_encode_decode_round_trip(style) -> None:
    vocab = experiment.Vocabulary(style, 16)
    for box in ([0, 0, 16, 16], [3, 5, 9, 12], [1, 15, 2, 16]):
        assert vocab.decode(vocab.encode(box)) == pytest.approx([c / 16 for c in box], abs=0.006)
    assert vocab.decode([vocab.eos] * vocab.max_new) is None


def test_tiny_run_writes_its_record(tmp_path) -> None:
    out, plot = tmp_path / "r.json", tmp_path / "r.png"
    experiment.main(["--steps", "2", "--seeds", "2", "--train", "32", "--test", "8", "--threads", "1",
                     "--out", str(out), "--plot", str(plot)])
    record = json.loads(out.read_text())
    assert set(record["results"]) == {"digits", "loc_tokens"}
    for arms in record["results"].values():
        assert set(arms) == {"CE", "CE + token_box"}
        for runs in arms.values():
            assert len(runs) == 2 and all(0 <= r["mean_iou"] <= 1 and 0 <= r["well_formed"] <= 1 for r in runs)
    assert plot.stat().st_size > 1000
