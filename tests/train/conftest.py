"""Fixtures of the trainer tests: a temporary contrastive loss and tiny configs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import trainer_testloss  # noqa: E402

import losskit  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the subprocesses run with OMP_NUM_THREADS=1 (same float summation
    order, so in-process reference runs match them bit for bit), and tiny models gain nothing
    from a second thread on a shared 2-core machine (it only adds synchronisation stalls)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def test_loss():
    """Registers ``trainer_test_clip`` for the test; yields its name."""
    with losskit.temporary_plugin(trainer_testloss.Plugin(), trainer_testloss.PLUGIN):
        yield trainer_testloss.NAME


def tiny_overrides(run_dir: Path, **extra: object) -> dict:
    """A config mapping that trains in about a second."""
    data = {
        "steps": 6,
        "loss": {"name": trainer_testloss.NAME},
        "data": {"train_images": 64, "val_images": 16, "image_size": 16, "batch_size": 8, "max_text_length": 48},
        "model": {"image_width": 32, "text_width": 16, "text_heads": 2, "text_layers": 1, "embed_dim": 16},
        "optim": {"warmup_steps": 2},
        "log_every": 1,
        "run_dir": str(run_dir),
        "progress": "log",
    }
    for key, value in extra.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[section] = value
    return data


@pytest.fixture
def tiny():
    return tiny_overrides


def comparable_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl of a run without the timing field (``samples_per_s``)."""
    from losskit.train.metrics import read_metrics

    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in read_metrics(Path(run_dir) / "metrics.jsonl")]


@pytest.fixture
def comparable():
    return comparable_metrics

