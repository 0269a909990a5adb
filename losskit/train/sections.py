"""The sections of a :class:`~losskit.train.config.TrainConfig`: data, model, optim, stages, eval, checkpoint."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["CheckpointConfig", "DataConfig", "EvalConfig", "ModelConfig", "OptimConfig", "Section", "StageConfig"]

Branch = Literal["image", "text", "heads"]


class Section(BaseModel):
    """Base of every section: unknown fields are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """Where the image–caption pairs come from and how they are batched."""

    source: Literal["generated", "coco", "manifest"] = Field(
        "generated",
        description="'generated': the built-in synthetic dataset; 'coco': captions_*.json + image folder; "
        "'manifest': JSONL or CSV of image,caption rows (Flickr30k-style).",
    )
    train_images: int = Field(6000, ge=8, le=10_000_000, description="Generated dataset: training images.")
    val_images: int = Field(200, ge=8, le=1_000_000, description="Generated dataset: validation images.")
    captions_per_image: int = Field(3, ge=1, le=3, description="Generated dataset: captions per image.")
    two_object_prob: float = Field(0.3, ge=0.0, le=1.0, description="Generated dataset: share of two-object images.")
    dataset_seed: int = Field(0, ge=0, description="Generated dataset: seed of the drawing (independent of the training seed).")
    train_annotations: str | None = Field(
        None, description="coco/manifest: training captions file (captions_train*.json, .jsonl or .csv)."
    )
    val_annotations: str | None = Field(None, description="coco/manifest: validation captions file.")
    image_root: str | None = Field(
        None, description="Folder that image paths are relative to; default: the annotation file's folder."
    )
    on_bad_image: Literal["raise", "skip"] = Field(
        "raise", description="Missing/unreadable image: 'raise' names the file; 'skip' drops it and reports the count."
    )
    image_size: int = Field(32, ge=8, le=1024, description="Side of the square model input in pixels.")
    augment: bool = Field(False, description="Light augmentation of file images (random resized crop 0.8-1, colour jitter).")
    max_text_length: int = Field(96, ge=4, le=1024, description="Caption length in UTF-8 bytes (with <bos>/<eos>).")
    batch_size: int = Field(128, ge=2, le=1_000_000, description="Pairs per process per micro-batch.")
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes (0: load in the main process).")
    shuffle_pairs: bool = Field(
        False, description="Control run: pair every training caption with a random image (recall must stay at chance)."
    )

    @model_validator(mode="after")
    def _files_given(self) -> DataConfig:
        if self.source != "generated" and (self.train_annotations is None or self.val_annotations is None):
            raise ValueError(f"train_annotations and val_annotations are required for source={self.source!r}")
        return self


class ModelConfig(Section):
    """The dual encoder."""

    image_encoder: Literal["compact", "resnet18", "resnet50", "vit_b_16"] = Field(
        "compact", description="Image tower; 'compact' is a small CNN that trains in minutes on a CPU."
    )
    image_weights: str | None = Field(
        None, description="Local torchvision state-dict file for the image tower (torch.load weights_only=True); null: random init."
    )
    image_width: int = Field(256, ge=8, le=8192, description="Output width of the compact image tower.")
    text_width: int = Field(96, ge=8, le=4096, description="Text Transformer width.")
    text_layers: int = Field(2, ge=1, le=48, description="Text Transformer layers.")
    text_heads: int = Field(4, ge=1, le=64, description="Text Transformer attention heads (divides text_width).")
    text_downsample: int = Field(4, ge=1, le=16, description="Bytes merged into one Transformer position (CANINE-style).")
    embed_dim: int = Field(128, ge=2, le=8192, description="Shared embedding size of the projections.")
    normalize: bool = Field(True, description="L2-normalise the features before the loss (as CLIP).")

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        if self.text_width % self.text_heads:
            raise ValueError(f"text_heads={self.text_heads} must divide text_width={self.text_width}")
        return self


class OptimConfig(Section):
    """AdamW with per-branch learning rates, linear warm-up then cosine decay."""

    lr: float = Field(2e-3, gt=0.0, le=10.0, description="Base learning rate (every branch without its own).")
    lr_image: float | None = Field(None, gt=0.0, le=10.0, description="Learning rate of the image tower; null: lr.")
    lr_text: float | None = Field(None, gt=0.0, le=10.0, description="Learning rate of the text tower; null: lr.")
    lr_head: float | None = Field(
        None, gt=0.0, le=10.0, description="Learning rate of the projections and the loss's parameters; null: lr."
    )
    weight_decay: float = Field(
        0.01, ge=0.0, le=1.0, description="AdamW decoupled weight decay; never on biases, norms or loss parameters."
    )
    betas: tuple[float, float] = Field((0.9, 0.98), description="AdamW betas.")
    eps: float = Field(1e-6, gt=0.0, le=1.0, description="AdamW epsilon.")
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up steps from 0 to the learning rate.")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="Decay after warm-up.")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Cosine floor as a fraction of each learning rate.")
    grad_clip: float | None = Field(1.0, gt=0.0, description="Clip the global gradient norm to this; null: no clipping.")
    accum_steps: int = Field(1, ge=1, le=1024, description="Micro-batches accumulated per optimiser step.")

    @model_validator(mode="after")
    def _betas_range(self) -> OptimConfig:
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas}")
        return self


class StageConfig(Section):
    """One stage of staged fine-tuning; stages run in order."""

    steps: int | None = Field(None, ge=1, description="Optimiser steps in this stage; null: until the end of training.")
    freeze: list[Branch] = Field(
        default_factory=list, description="Branches frozen in this stage (no gradient, eval mode): image, text, heads."
    )
    lr_scale: float = Field(1.0, gt=0.0, le=100.0, description="Multiplies every learning rate during this stage.")


class EvalConfig(Section):
    """Retrieval evaluation on the validation split."""

    every: int | None = Field(
        None,
        ge=0,
        description="Evaluate every N steps besides before and after training; 0: only those; "
        "null: four times during the run (every ceil(steps / 5) steps).",
    )
    ks: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [1, 5, 10], min_length=1, description="K values of recall@K (positive, unique)."
    )
    batch_size: int = Field(512, ge=1, description="Batch size of the feature extraction.")

    @field_validator("ks")
    @classmethod
    def _unique(cls, ks: list[int]) -> list[int]:
        repeated = sorted({k for k in ks if ks.count(k) > 1})
        if repeated:
            raise ValueError(f"K values must be unique, {repeated} repeated in {ks}")
        return ks

    def interval(self, steps: int) -> int:
        """Steps between evaluations during training (0: none)."""
        return self.every if self.every is not None else -(-steps // 5)


class CheckpointConfig(Section):
    """Checkpoints in RUN_DIR/checkpoints (atomic writes)."""

    every: int = Field(0, ge=0, description="Save every N steps (and at the end); 0: only at the end.")
    keep: int = Field(2, ge=1, le=1000, description="Keep the last K checkpoints.")
