"""Checkpoints: atomic names, keep-last-K, weights_only loading, corrupt-latest fallback."""

import pytest
import torch

from losskit.train.checkpoint import CheckpointError, list_checkpoints, load_latest, save_checkpoint


def _state(step):
    return {"weights": torch.full((3,), float(step)), "step": step, "config": {"name": "x", "ks": [1, 5]}}


def test_keep_last_k_and_weights_only(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, _state(step), keep=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step-00000003.pt", "step-00000004.pt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    loaded = torch.load(tmp_path / names[-1], weights_only=True)
    assert loaded["step"] == 4 and torch.equal(loaded["weights"], torch.full((3,), 4.0))


def test_corrupt_latest_falls_back_to_previous(tmp_path):
    save_checkpoint(tmp_path, 10, _state(10), keep=3)
    latest = save_checkpoint(tmp_path, 20, _state(20), keep=3)
    latest.write_bytes(latest.read_bytes()[:50])  # torn file
    with pytest.warns(RuntimeWarning, match=r"step-00000020\.pt is corrupt"):
        path, state = load_latest(tmp_path)
    assert path.name == "step-00000010.pt" and state["step"] == 10


def test_nothing_usable_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_latest(tmp_path)
    save_checkpoint(tmp_path, 1, _state(1), keep=1).write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError, match="could be loaded"):
        load_latest(tmp_path)
