"""Checkpoints: atomic names, keep-last-K, weights_only loading, checksum, fallback past damaged ones, full disk."""

import subprocess
import sys
import textwrap

import pytest
import torch

from losskit.train.checkpoint import (
    REQUIRED_KEYS,
    CheckpointError,
    list_checkpoints,
    load_latest,
    remove_orphans,
    save_checkpoint,
    state_digest,
)


def _state(step, size=3):
    state = {key: {} for key in REQUIRED_KEYS}
    state.update(objective={"weights": torch.full((size,), float(step))}, step=step, config={"name": "x", "ks": [1, 5]})
    return state


def test_keep_last_k_and_weights_only(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, _state(step), keep=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step-00000003.pt", "step-00000004.pt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    loaded = torch.load(tmp_path / names[-1], weights_only=True)
    assert loaded["step"] == 4 and torch.equal(loaded["objective"]["weights"], torch.full((3,), 4.0))
    assert loaded["checksum"] == state_digest(loaded) == state_digest(_state(4))


def test_digest_sees_every_value():
    base = state_digest(_state(1))
    assert state_digest(_state(2)) != base  # a number
    flipped = _state(1)
    flipped["objective"]["weights"][1] = 1.0000001  # one tensor element
    assert state_digest(flipped) != base
    assert state_digest({**_state(1), "config": {"name": "x", "ks": [1, 6]}}) != base


def _flip(path, count=64):
    data = bytearray(path.read_bytes())
    start = len(data) // 3
    data[start : start + count] = bytes(b ^ 0xFF for b in data[start : start + count])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:50]), "unreadable"),
        (_flip, "content does not match its SHA-256 checksum"),
        (lambda p: torch.save({}, p), "lacks checksum, objective"),
        (lambda p: torch.save({k: v for k, v in torch.load(p, weights_only=True).items() if k != "rng"}, p), "lacks rng"),
        (lambda p: torch.save([1, 2], p), "holds a list"),
    ],
    ids=["truncated", "bit-flipped", "empty-dict", "no-rng", "not-a-dict"],
)
def test_damaged_latest_falls_back_to_previous_with_one_warning(tmp_path, damage, reason):
    save_checkpoint(tmp_path, 10, _state(10, size=30000), keep=3)
    latest = save_checkpoint(tmp_path, 20, _state(20, size=30000), keep=3)
    damage(latest)
    with pytest.warns(RuntimeWarning) as caught:
        path, state = load_latest(tmp_path)
    assert path.name == "step-00000010.pt" and state["step"] == 10
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "step-00000020.pt skipped: " + reason in message and "trying the previous one" in message
    assert "\n" not in message


def test_check_refuses_a_checkpoint_and_the_reason_is_listed(tmp_path):
    save_checkpoint(tmp_path, 1, _state(1), keep=3)
    save_checkpoint(tmp_path, 2, _state(2), keep=3)

    def check(state):
        if state["step"] == 2:
            raise ValueError("another run's")

    with pytest.warns(RuntimeWarning, match="step-00000002.pt skipped: another run's"):
        assert load_latest(tmp_path, check=check)[1]["step"] == 1


def test_nothing_usable_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_latest(tmp_path)
    save_checkpoint(tmp_path, 1, _state(1), keep=1).write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError, match="no usable checkpoint .*step-00000001.pt: unreadable"):
        load_latest(tmp_path)


def test_orphans_of_a_killed_save_are_removed(tmp_path):
    save_checkpoint(tmp_path, 1, _state(1), keep=1)
    (tmp_path / ".tmp-abc123.pt").write_bytes(b"half a checkpoint")
    assert [p.name for p in remove_orphans(tmp_path)] == [".tmp-abc123.pt"]
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001.pt"]


def test_full_disk_keeps_the_previous_checkpoint_and_no_temporary_file(tmp_path):
    # a real failed write: the file size limit (ulimit -f) lets the small checkpoint through, not the big one
    script = textwrap.dedent(f"""
        import resource, torch
        from pathlib import Path
        from losskit.train.checkpoint import CheckpointError, REQUIRED_KEYS, save_checkpoint
        def state(step, size):
            s = {{k: {{}} for k in REQUIRED_KEYS}}
            s.update(objective={{"w": torch.zeros(size)}}, step=step)
            return s
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        save_checkpoint(Path({str(tmp_path)!r}), 1, state(1, 1000), keep=2)
        try:
            save_checkpoint(Path({str(tmp_path)!r}), 2, state(2, 100_000), keep=2)
        except CheckpointError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert f"cannot write checkpoint {tmp_path / 'step-00000002.pt'}" in message
    assert "File too large" in message and "kept the previous checkpoint(s): step-00000001.pt" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000001.pt"]  # no .tmp-*, the old one intact
    assert torch.load(tmp_path / "step-00000001.pt", weights_only=True)["step"] == 1
