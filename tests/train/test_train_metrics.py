"""Progress output (tqdm on a terminal, plain lines otherwise) and metrics.jsonl reading/truncation."""

import json
import os
import pty
import select
import sys
import termios

from losskit.train.metrics import MetricsLog, Progress, read_metrics


def test_plain_log_lines_when_stderr_is_not_a_terminal(capsys):
    progress = Progress("auto", total=4, initial=0, enabled=True)  # pytest captures stderr: not a tty
    assert progress.bar is None
    for step in range(1, 5):
        progress.update(step, {"loss": 1.0 / step}, log_line=step % 2 == 0)
    progress.message("evaluated")
    progress.close()
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["step 2/4 loss 0.5", "step 4/4 loss 0.25", "evaluated"]
    assert captured.err == ""


def test_tqdm_bar_on_a_terminal(monkeypatch):
    master, replica = pty.openpty()
    termios.tcsetwinsize(replica, (24, 100))  # a fresh pty is 0 columns wide
    with os.fdopen(replica, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        progress = Progress("auto", total=8, initial=2, enabled=True)
        assert progress.bar is not None
        progress.update(5, {"loss": 0.125}, log_line=True)
        progress.close()
        terminal.flush()
        drawn = b""
        while select.select([master], [], [], 0.5)[0]:
            drawn += os.read(master, 65536)
    os.close(master)
    drawn = drawn.decode()
    assert "5/8" in drawn and "loss=0.125" in drawn and "step 5/8" not in drawn


def test_disabled_progress_prints_nothing(capsys):
    progress = Progress("log", total=2, initial=0, enabled=False)  # ranks > 0 and quiet runs
    progress.update(2, {"loss": 1.0}, log_line=True)
    progress.message("hidden")
    progress.close()
    assert capsys.readouterr() == ("", "")


def test_torn_last_line_is_ignored_and_truncate_keeps_earlier_steps(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for record in ({"step": 0, "eval": {"i2t_r1": 0.1}}, {"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}):
        log.write(record)
    with log.path.open("a") as f:
        f.write('{"step": 3, "lo')  # a run killed mid-write
    assert [r["step"] for r in read_metrics(log.path)] == [0, 1, 2]
    log.truncate_after(1)
    assert [json.loads(line) for line in log.path.read_text().splitlines()] == [
        {"step": 0, "eval": {"i2t_r1": 0.1}},
        {"step": 1, "loss": 2.0},
    ]
