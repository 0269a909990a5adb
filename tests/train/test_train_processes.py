"""Multi-process trainer tests: SIGKILL + --resume equals an uninterrupted run; torchrun 2 x gloo equals 1 process.

The CLI runs in real subprocesses (``trainer_cli.py`` registers the tests' loss, then
calls ``losskit.cli.main``); DDP runs under the real ``torchrun`` launcher.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from losskit.train.config import validate_train_config
from losskit.train.loop import train
from losskit.train.metrics import read_metrics

CLI = str(Path(__file__).parent / "trainer_cli.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, tiny, test_loss, comparable):
    cfg = tiny(tmp_path / "killed", steps=40, checkpoint={"every": 5, "keep": 2}, eval={"every": 20})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, CLI, "train", "--config", str(tmp_path / "c.yaml")], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    ckpt = tmp_path / "killed/checkpoints/step-00000010.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert not (tmp_path / "killed/checkpoints/step-00000040.pt").exists()  # it really died mid-way

    resumed = subprocess.run([sys.executable, CLI, "train", "--resume", str(tmp_path / "killed")], env=ENV,
                             capture_output=True, text=True, timeout=180)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout

    cfg["run_dir"] = str(tmp_path / "straight")
    reference = train(validate_train_config(cfg), quiet=True)
    assert comparable(tmp_path / "killed") == comparable(tmp_path / "straight")
    assert reference.after == read_metrics(tmp_path / "killed/metrics.jsonl")[-1]["eval"]


@pytest.mark.slow
@pytest.mark.parametrize("gather", ["trainer", "loss"])
def test_torchrun_two_gloo_processes_match_one_process(tmp_path, tiny, test_loss, gather):
    # "trainer": a loss without a `distributed` field, gathered by the trainer;
    # "loss": the bundled clip, which gathers itself (distributed: auto)
    base = tiny(tmp_path / "ddp", steps=5, optim={"warmup_steps": 2, "grad_clip": 0.5})
    if gather == "loss":
        base["loss"] = {"name": "clip"}
    base["data"]["batch_size"] = 8  # per process: global batch 16
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(base))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", CLI, "train",
           "--config", str(tmp_path / "c.yaml")]  # fmt: skip
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    single = dict(base, run_dir=str(tmp_path / "single"))
    single["data"] = dict(base["data"], batch_size=16)
    train(validate_train_config(single), quiet=True)
    ddp, one = read_metrics(tmp_path / "ddp/metrics.jsonl"), read_metrics(tmp_path / "single/metrics.jsonl")
    ddp_loss = [r["loss"] for r in ddp if "loss" in r]
    one_loss = [r["loss"] for r in one if "loss" in r]
    assert len(ddp_loss) == len(one_loss) == 5
    assert ddp_loss == pytest.approx(one_loss, rel=1e-4, abs=1e-5)
    assert ddp[-1]["eval"] == pytest.approx(one[-1]["eval"], abs=1e-6)
    assert sorted(p.name for p in (tmp_path / "ddp/checkpoints").iterdir()) == ["step-00000005.pt"]  # rank 0 only
