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
    result = train(validate_train_config(tiny(tmp_path / "run", checkpoint={"every": 2, "keep": 2}, eval={"every": 4})))
    run = tmp_path / "run"
    assert result.steps == 6 and result.final_loss == pytest.approx(read_metrics(run / "metrics.jsonl")[-2]["loss"])
    records = read_metrics(run / "metrics.jsonl")
    assert records[0] == {"step": 0, "eval": result.before} and records[-1]["eval"] == result.after
    evals = [r for r in records if "eval" in r]
    assert [r["step"] for r in evals] == [0, 4, 6]  # before, every 4 steps, at the end
    assert set(evals[1]["eval"]) == {f"{d}_r{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
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
    """``m.jsonl``: 6 images x 2 captions, ``5.png`` undecodable; ``clean.jsonl``: images 0-4 only."""
    rows = []
    for i in range(6):
        Image.fromarray(np.full((10, 10, 3), 40 * i, dtype=np.uint8)).save(root / f"{i}.png")
        rows += [{"image": f"{i}.png", "caption": f"shade {i}"}, {"image": f"{i}.png", "caption": f"grey {i}"}]
    (root / "5.png").write_bytes(b"not an image at all")
    (root / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (root / "clean.jsonl").write_text("\n".join(json.dumps(r) for r in rows if r["image"] != "5.png"))
    return str(root / "m.jsonl")


def _bad_image_config(root, tiny, policy, val):
    data = {"source": "manifest", "train_annotations": str(root / "m.jsonl"), "val_annotations": str(root / val),
            "image_size": 8, "batch_size": 4, "on_bad_image": policy, "max_text_length": 16, "num_workers": 1}  # fmt: skip
    return {**tiny(root / "run"), "data": data, "steps": 4}


@pytest.mark.parametrize("val", ["m.jsonl", "clean.jsonl"], ids=["found-in-evaluation", "found-mid-epoch"])
def test_on_bad_image_raise_names_the_file(tmp_path, tiny, test_loss, val, capsys):
    _manifest_with_broken_image(tmp_path)
    config = validate_train_config(_bad_image_config(tmp_path, tiny, "raise", val))
    with pytest.raises(BadImageError, match=r"5\.png"):
        train(config, quiet=True)
    # through the CLI: one line naming the file, no traceback (the DataLoader worker never raises)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--overwrite"]) == 1  # the failed run's folder
    err = capsys.readouterr().err
    assert "losskit train: error:" in err and str(tmp_path / "5.png") in err and "Traceback" not in err


def test_on_bad_image_skip_counts_and_reports(tmp_path, tiny, test_loss, capsys):
    _manifest_with_broken_image(tmp_path)
    result = train(validate_train_config(_bad_image_config(tmp_path, tiny, "skip", "m.jsonl")))
    assert result.skipped == [str(tmp_path / "5.png")]
    assert f"skipped 1 unreadable image(s): {tmp_path / '5.png'}" in capsys.readouterr().out


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


def test_resume_falls_back_past_a_corrupt_latest_checkpoint(tmp_path, tiny, test_loss, comparable, capsys):
    straight = train(validate_train_config(tiny(tmp_path / "run", checkpoint={"every": 2, "keep": 3})), quiet=True)
    expected = comparable(tmp_path / "run")
    latest = tmp_path / "run/checkpoints/step-00000006.pt"
    latest.write_bytes(latest.read_bytes()[:100])  # torn write
    with pytest.warns(RuntimeWarning, match=r"step-00000006\.pt skipped: unreadable, .*trying the previous one"):
        resumed = train(resume=tmp_path / "run")
    assert "step-00000004.pt (step 4)" in capsys.readouterr().out
    assert resumed.steps == 6 and resumed.after == straight.after and resumed.before == straight.before
    assert comparable(tmp_path / "run") == expected  # steps 5 and 6 redone identically
    assert torch.load(latest, weights_only=True)["step"] == 6  # rewritten


def test_gradient_clipping_bounds_the_first_update(tmp_path, tiny, test_loss):
    # AdamW's first step moves each weight by lr * g / (|g| + eps): about lr when unclipped,
    # at most lr * 1e-9 / eps = lr * 1e-3 when the global gradient norm is clipped to 1e-9
    def largest_change(grad_clip):
        cfg = tiny(tmp_path / f"clip{grad_clip}", steps=1, optim={"warmup_steps": 0, "weight_decay": 0.0, "grad_clip": grad_clip})
        config = validate_train_config(cfg)
        train(config, quiet=True)
        after = torch.load(tmp_path / f"clip{grad_clip}/checkpoints/step-00000001.pt", weights_only=True)["objective"]
        torch.manual_seed(config.seed)
        before = build_model(config).state_dict()
        return max(float((after[f"model.{k}"] - v).abs().max()) for k, v in before.items())

    lr = 2e-3
    assert largest_change(None) > 0.5 * lr
    assert largest_change(1e-9) <= lr * 1e-3 * 1.01


def test_sweep_validates_every_value_before_the_first_run(tmp_path, tiny, test_loss, capsys):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny(tmp_path / "sweep")))
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--sweep", "loss.temperature=0.1,-1"]) == 1
    assert "loss.temperature:" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()  # the valid first value did not run either


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
    state = torch.load(tmp_path / "run/checkpoints/step-00000003.pt", weights_only=True)
    assert (state["epoch"], state["position"]) == (0, 6)  # 3 steps x 2 accumulated micro-batches
    assert any(k.startswith("loss.") for k in state["objective"])  # the loss's learnable state is checkpointed
