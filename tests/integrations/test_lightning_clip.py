"""losskit inside PyTorch Lightning (real ``lightning.Trainer`` on CPU).

A ``LightningModule`` trains a dual encoder with ``clip`` (learnable temperature) while a
``losskit.Curriculum`` anneals the loss's label smoothing. Checked: the curriculum sets
the scheduled value at every global step, the temperature is optimised, it is in the
checkpoint, ``load_from_checkpoint`` restores it, and resuming from the checkpoint
continues both the schedule and the step count.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

import losskit

SMOOTHING = {"kind": "linear", "start": 0.2, "end": 0.0, "steps": 10}  # 0.2 - 0.02 * step until step 10
INITIAL_TEMPERATURE = 0.2


class ClipModule(L.LightningModule):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.loss_fn = losskit.build("clip", temperature=INITIAL_TEMPERATURE)  # learnable_temperature by default
        self.curriculum = losskit.Curriculum(self.loss_fn, {"label_smoothing": SMOOTHING})
        self.seen: list[tuple[int, float]] = []  # (global step, label_smoothing used)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.curriculum.step(self.global_step)

    def training_step(self, batch, batch_idx) -> torch.Tensor:
        out = self.encoder(batch["pixel_values"], batch["input_ids"])
        result = self.loss_fn.compute(out["image_embeds"], out["text_embeds"])
        self.seen.append((self.global_step, self.loss_fn.config.label_smoothing))
        self.log("train_loss", result.loss)
        return result.loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["curriculum"] = self.curriculum.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.curriculum.load_state_dict(checkpoint["curriculum"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=5e-2)


def trainer(root: Path, max_steps: int, checkpoint: ModelCheckpoint | None = None) -> L.Trainer:
    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=checkpoint is not None,
        callbacks=[checkpoint] if checkpoint else [],
        default_root_dir=str(root),
    )


def scale(module: ClipModule) -> torch.Tensor:
    return module.loss_fn.log_logit_scale.detach().clone()


def test_lightning_trains_clip_temperature_with_a_curriculum_and_checkpoints_it(
    tmp_path: Path, dual_encoder, dual_encoder_class, paired_data
) -> None:
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(paired_data, batch_size=16, shuffle=False)  # 4 steps per epoch
    module = ClipModule(dual_encoder)
    assert "log_logit_scale" in dict(module.loss_fn.named_parameters())
    initial = scale(module)
    assert initial.item() == pytest.approx(math.log(1 / INITIAL_TEMPERATURE))

    every_6 = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=6, save_top_k=-1)
    trainer(tmp_path, 6, every_6).fit(module, loader)

    assert [s for s, _ in module.seen] == list(range(6))
    assert [v for _, v in module.seen] == pytest.approx([0.2 - 0.02 * s for s in range(6)])
    trained = scale(module)
    assert not torch.equal(trained, initial), "the learnable temperature was not optimised"

    (path,) = sorted((tmp_path / "ckpt").glob("*.ckpt"))
    saved = torch.load(path, map_location="cpu", weights_only=False)
    torch.testing.assert_close(saved["state_dict"]["loss_fn.log_logit_scale"], trained)
    assert saved["curriculum"]["last_step"] == 5

    restored = ClipModule.load_from_checkpoint(path, encoder=dual_encoder_class())
    torch.testing.assert_close(scale(restored), trained)
    assert restored.loss_fn.config.label_smoothing == pytest.approx(0.2 - 0.02 * 5)
    for (name, a), b in zip(module.state_dict().items(), restored.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)

    # resuming continues the step count, the schedule and the temperature from the checkpoint
    resumed = ClipModule(dual_encoder_class())
    trainer(tmp_path / "resume", 9).fit(resumed, loader, ckpt_path=str(path))
    assert [s for s, _ in resumed.seen] == [6, 7, 8]
    assert [v for _, v in resumed.seen] == pytest.approx([0.2 - 0.02 * s for s in (6, 7, 8)])
    assert not torch.equal(scale(resumed), trained)  # it went on training from the saved value
