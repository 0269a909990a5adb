"""Run directories and resume: non-empty folders refused, --overwrite, the run's config wins, foreign,
damaged and ill-fitting checkpoints skipped with one line, finished runs, orphans, a full disk."""

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from subprocess_output import own_lines

from losskit.train.checkpoint import CheckpointError, state_digest
from losskit.train.config import validate_train_config
from losskit.train.loop import train
from losskit.train.metrics import read_metrics
from losskit.train.rundir import RunDirError

CLI = str(Path(__file__).parent / "trainer_cli.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(tiny, run_dir, **extra):
    return train(validate_train_config(tiny(run_dir, checkpoint={"every": 2, "keep": 3}, eval={"every": 0}, **extra)), quiet=True)


def test_a_new_run_refuses_a_non_empty_folder_unless_overwrite(tmp_path, tiny, test_loss):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match=r"run directory .*run is not empty \(notes\.txt\); continue that run with --resume"):
        _run(tiny, run)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    train(validate_train_config(tiny(run, steps=4, checkpoint={"every": 2})), quiet=True, overwrite=True)
    with pytest.raises(RunDirError, match="--overwrite"):  # a finished run is not empty either
        _run(tiny, run)
    result = train(validate_train_config(tiny(run, steps=2)), quiet=True, overwrite=True)
    assert result.steps == 2 and (run / "notes.txt").read_text() == "mine"  # only the run's own files go
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002.pt"]
    assert max(r["step"] for r in read_metrics(run / "metrics.jsonl")) == 2


def test_resume_uses_the_runs_config_and_refuses_another_runs_checkpoint(tmp_path, tiny, test_loss, comparable):
    _run(tiny, tmp_path / "a")
    expected = comparable(tmp_path / "a")
    _run(tiny, tmp_path / "b", optim={"warmup_steps": 2, "lr": 0.01})
    os.replace(tmp_path / "b/checkpoints/step-00000006.pt", tmp_path / "a/checkpoints/step-00000008.pt")
    (tmp_path / "a/checkpoints/step-00000006.pt").unlink()
    with pytest.warns(RuntimeWarning, match=r"step-00000008\.pt skipped: written under another config \(hash") as caught:
        resumed = train(resume=tmp_path / "a", quiet=True)
    assert len(caught) == 1 and resumed.steps == 6 and comparable(tmp_path / "a") == expected
    # an edited config.yaml: no checkpoint fits it any more
    config = yaml.safe_load((tmp_path / "a/config.yaml").read_text())
    (tmp_path / "a/config.yaml").write_text(yaml.safe_dump({**config, "seed": 5}))
    with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError, match="another config"):
        train(resume=tmp_path / "a", quiet=True)


def test_resume_of_a_finished_run_adds_nothing(tmp_path, tiny, test_loss, capsys):
    first = _run(tiny, tmp_path / "run")
    before = (tmp_path / "run/metrics.jsonl").read_text()
    again = train(resume=tmp_path / "run")
    assert (tmp_path / "run/metrics.jsonl").read_text() == before  # no duplicate final evaluation
    assert again.after == first.after and again.steps == 6 and again.final_loss == first.final_loss
    assert "finished at step 6 already; nothing to train" in capsys.readouterr().out


def test_resume_removes_orphans_and_falls_back_past_a_bit_flip(tmp_path, tiny, test_loss, comparable, capsys):
    _run(tiny, tmp_path / "run")
    expected = comparable(tmp_path / "run")
    latest = tmp_path / "run/checkpoints/step-00000006.pt"
    data = bytearray(latest.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = bytes(64)  # 64 bytes zeroed a third of the way in
    latest.write_bytes(bytes(data))
    (tmp_path / "run/checkpoints/.tmp-killed.pt").write_bytes(b"half")
    with pytest.warns(RuntimeWarning, match=r"step-00000006\.pt skipped: content does not match its SHA-256 checksum"):
        train(resume=tmp_path / "run")
    out = capsys.readouterr().out
    assert "removed " in out and ".tmp-killed.pt" in out and "step-00000004.pt (step 4)" in out
    assert not (tmp_path / "run/checkpoints/.tmp-killed.pt").exists() and comparable(tmp_path / "run") == expected


def _resave(path, change):
    state = torch.load(path, weights_only=True)
    change(state)
    state["checksum"] = state_digest(state)
    torch.save(state, path)


@pytest.mark.slow
def test_keyless_and_ill_fitting_checkpoints_give_one_warning_line_each(tmp_path, tiny, test_loss, comparable):
    _run(tiny, tmp_path / "run")
    expected = comparable(tmp_path / "run")
    torch.save({}, tmp_path / "run/checkpoints/step-00000006.pt")
    key = "model.image_encoder.head.weight"
    _resave(tmp_path / "run/checkpoints/step-00000004.pt", lambda s: s["objective"].update({key: torch.zeros(3, 3)}))
    done = subprocess.run([sys.executable, CLI, "train", "--resume", str(tmp_path / "run")], env=ENV,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    warnings = own_lines(done.stderr)
    assert len(warnings) == 2 and "Traceback" not in done.stderr, done.stderr
    assert "step-00000006.pt skipped: lacks checksum, objective" in warnings[0]
    assert f"step-00000004.pt skipped: model/loss state does not fit this model: {key} has shape [3, 3]" in warnings[1]
    assert all(w.startswith("losskit train: warning: checkpoint ") for w in warnings)
    assert "step-00000002.pt (step 2)" in done.stdout and comparable(tmp_path / "run") == expected


def _file_size_limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))


def test_a_full_disk_stops_with_one_line_and_no_temporary_file(tmp_path, tiny, test_loss):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny(tmp_path / "run", steps=2)))
    done = subprocess.run([sys.executable, CLI, "train", "--config", str(tmp_path / "c.yaml")], env=ENV,
                          capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = own_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"losskit train: error: cannot write checkpoint {tmp_path / 'run/checkpoints/step-00000002.pt'}")
    assert "File too large" in lines[0] and "kept the previous checkpoint(s): none" in lines[0]
    assert list((tmp_path / "run/checkpoints").iterdir()) == []
