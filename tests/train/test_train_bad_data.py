"""Data that cannot be used at all: every training or every validation image unreadable (on_bad_image=skip)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from subprocess_output import own_lines

from losskit.errors import LosskitError
from losskit.train.config import validate_train_config
from losskit.train.loop import train

CLI = str(Path(__file__).parent / "trainer_cli.py")


def _files(root, good):
    """``good.jsonl`` (real images) and ``bad.jsonl`` (files that exist but do not decode), 8 images x 2 captions."""
    for kind in ("good", "bad"):
        rows = []
        for i in range(8):
            path = root / f"{kind}{i}.png"
            if kind == "good":
                Image.fromarray(np.full((10, 10, 3), 30 * i, dtype=np.uint8)).save(path)
            else:
                path.write_bytes(b"not an image")
            rows += [{"image": path.name, "caption": f"{kind} {i}"}, {"image": path.name, "caption": f"{kind} #{i}"}]
        (root / f"{kind}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))


def _config(root, tiny, train_file, val_file):
    data = {"source": "manifest", "train_annotations": str(root / train_file), "val_annotations": str(root / val_file),
            "image_size": 8, "batch_size": 4, "on_bad_image": "skip", "max_text_length": 16}  # fmt: skip
    return {**tiny(root / "run"), "data": data, "steps": 3}


def test_every_training_image_unreadable_stops_with_a_clear_error(tmp_path, tiny, test_loss):
    _files(tmp_path, good=True)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_config(tmp_path, tiny, "bad.jsonl", "good.jsonl")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, CLI, "train", "--config", str(tmp_path / "c.yaml")], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip  (it used to spin forever)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = own_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"losskit train: error: no readable training images in {tmp_path / 'bad.jsonl'}")


def test_every_validation_image_unreadable_is_a_clear_error(tmp_path, tiny, test_loss):
    _files(tmp_path, good=True)
    with pytest.raises(LosskitError, match=rf"no readable validation images in {tmp_path / 'bad.jsonl'}: all 8 failed"):
        train(validate_train_config(_config(tmp_path, tiny, "good.jsonl", "bad.jsonl")), quiet=True)
