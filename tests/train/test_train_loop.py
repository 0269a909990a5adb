"""The training loop in-process: outputs, on_bad_image, staged freezing, the shuffled-pairs control, CLI errors, sweeps."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from losskit.cli import main
from losskit.train.config import validate_train_config
from losskit.train.data.base import BadImageError
from losskit.train.loop import build_model, train
from losskit.train.metrics import read_metrics
from losskit.train.sweep import run_sweep


def test_tiny_run_writes_a_complete_run_directory(tmp_path, tiny, test_loss, capsys):
    result = train(validate_train_config(tiny(tmp_path / "run", checkpoint={"every": 2, "keep": 2})))
    run = tmp_path / "run"
    assert result.steps == 6 and result.final_loss == pytest.approx(read_metrics(run / "metrics.jsonl")[-2]["loss"])
    records = read_metrics(run / "metrics.jsonl")
    assert records[0] == {"step": 0, "eval": result.before} and records[-1]["eval"] == result.after
    train_lines = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_lines] == [1, 2, 3, 4, 5, 6]
    assert set(train_lines[0]["parts"]) == {"i2t", "t2i"} and "temperature" in train_lines[0]["metrics"]
    assert train_lines[0]["lr"]["image"] == pytest.approx(0.001)  # warm-up 1/2 of 2e-3
    assert all(np.isfinite(r["samples_per_s"]) for r in train_lines)
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["step-00000004.pt", "step-00000006.pt"]
    state = torch.load(run / "checkpoints" / ckpts[-1], weights_only=True)
    assert state["step"] == 6 and "model.image_encoder.head.weight" in state["objective"]
    assert validate_train_config(yaml.safe_load((run / "config.yaml").read_text())).steps == 6
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "image→text R@1" in out and "before" in out and "after" in out


def _manifest_with_broken_image(root):
    rows = []
    for i in range(6):
        Image.fromarray(np.full((10, 10, 3), 40 * i, dtype=np.uint8)).save(root / f"{i}.png")
        rows += [{"image": f"{i}.png", "caption": f"shade {i}"}, {"image": f"{i}.png", "caption": f"grey {i}"}]
    (root / "5.png").write_bytes(b"not an image at all")
    (root / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return str(root / "m.jsonl")


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_on_bad_image_policy(tmp_path, tiny, test_loss, policy, capsys):
    manifest = _manifest_with_broken_image(tmp_path)
    data = {"source": "manifest", "train_annotations": manifest, "val_annotations": manifest, "image_size": 8,
            "batch_size": 4, "on_bad_image": policy, "max_text_length": 16, "num_workers": 1}  # fmt: skip
    config = validate_train_config({**tiny(tmp_path / "run"), "data": data, "steps": 4})
    if policy == "raise":
        with pytest.raises(BadImageError, match=r"5\.png"):
            train(config)
        return
    result = train(config)
    assert result.skipped == [str(tmp_path / "5.png")]
    assert "skipped" in capsys.readouterr().out


def test_stage_freezes_the_image_tower_then_unfreezes(tmp_path, tiny, test_loss):
    cfg = tiny(tmp_path / "run", stages=[{"steps": 3, "freeze": ["image"]}, {}], checkpoint={"every": 3, "keep": 5})
    train(validate_train_config(cfg))
    a = torch.load(tmp_path / "run/checkpoints/step-00000003.pt", weights_only=True)["objective"]
    b = torch.load(tmp_path / "run/checkpoints/step-00000006.pt", weights_only=True)["objective"]
    torch.manual_seed(0)  # the trainer seeds with config.seed (0) before building: same initial weights
    init = build_model(validate_train_config(cfg)).state_dict()
    key = "image_encoder.head.weight"
    assert torch.equal(a[f"model.{key}"], init[key])  # frozen for 3 steps
    assert not torch.equal(b[f"model.{key}"], a[f"model.{key}"])  # trained afterwards
    assert not torch.equal(a["model.text_encoder.norm.weight"], init["text_encoder.norm.weight"])


def test_shuffled_pairs_control_stays_at_chance(tmp_path, tiny, test_loss):
    def run(shuffle):
        cfg = tiny(
            tmp_path / f"run{shuffle}",
            steps=60,
            data={"train_images": 300, "val_images": 40, "image_size": 16, "batch_size": 32, "two_object_prob": 0.0,
                  "max_text_length": 48, "shuffle_pairs": shuffle},
            optim={"warmup_steps": 5, "lr": 3e-3},
            progress="log",
        )  # fmt: skip
        return train(validate_train_config(cfg), quiet=True)

    control, real = run(True), run(False)
    for key in ("i2t_r1", "t2i_r1"):
        assert control.after[key] <= 3 * control.chance[key] + 0.05, (key, control.after, control.chance)
        assert real.after[key] >= 3 * real.chance[key], (key, real.after)
        assert real.after[key] > control.after[key] + 0.05


def test_cli_reports_bad_fields(capsys):
    assert main(["train", "--set", "optim.lr=-1", "data.batch_size=zero"]) == 1
    err = capsys.readouterr().err
    assert "optim.lr:" in err and "data.batch_size:" in err


def test_sweep_writes_a_comparison(tmp_path, tiny, test_loss):
    config = validate_train_config({**tiny(tmp_path / "sweep"), "steps": 2})
    rows = run_sweep(config, ["loss.temperature=0.05,0.2"], quiet=True)
    assert [r["values"] for r in rows] == [{"loss.temperature": 0.05}, {"loss.temperature": 0.2}]
    assert (tmp_path / "sweep/sweep.png").exists() and "| loss.temperature=0.2 |" in (tmp_path / "sweep/sweep.md").read_text()
    first = yaml.safe_load((tmp_path / "sweep/loss.temperature=0.05/config.yaml").read_text())
    assert first["loss"]["temperature"] == 0.05


def test_bundled_clip_with_a_curriculum(tmp_path, tiny):
    cfg = tiny(
        tmp_path / "run",
        loss={"name": "clip", "learnable_temperature": False},
        curriculum={"temperature": {"kind": "linear", "start": 0.1, "end": 0.05, "steps": 5}},
    )
    train(validate_train_config(cfg), quiet=True)
    lines = [r for r in read_metrics(tmp_path / "run/metrics.jsonl") if "loss" in r]
    # the metrics of step s come from the loss computed with the schedule's value at step s - 1
    assert [round(r["metrics"]["temperature"], 6) for r in lines] == [0.1, 0.09, 0.08, 0.07, 0.06, 0.05]
    assert set(lines[0]["parts"]) == {"image_to_text", "text_to_image"}


@pytest.mark.parametrize(
    "loss",
    [
        {"name": "siglip"},
        {"name": "infonce", "learnable_temperature": True},
        {"name": "mixture", "terms": {"itc": {"name": "clip"}, "sig": {"name": "siglip"}}},
    ],
    ids=["siglip", "infonce", "mixture"],
)
def test_other_bundled_losses_with_accumulation_and_bf16(tmp_path, tiny, loss):
    cfg = tiny(tmp_path / "run", loss=loss, steps=3, precision="bf16")
    cfg["optim"]["accum_steps"] = 2
    result = train(validate_train_config(cfg), quiet=True)
    lines = [r for r in read_metrics(tmp_path / "run/metrics.jsonl") if "loss" in r]
    assert len(lines) == 3 and np.isfinite(result.final_loss)
    params = torch.load(tmp_path / "run/checkpoints/step-00000003.pt", weights_only=True)["objective"]
    assert any(k.startswith("loss.") for k in params)  # the loss's learnable state is checkpointed
