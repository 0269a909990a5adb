"""The training loop of ``losskit train``: :func:`train`.

One optimiser step = ``optim.accum_steps`` micro-batches of ``data.batch_size`` pairs
per process. Every piece of state that decides what happens next (model, loss,
optimizer, curriculum, RNG, epoch and position in the epoch) is in the checkpoint, and
the learning rate is a pure function of the step, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

import losskit
from losskit import distributed as kdist
from losskit.errors import LosskitError
from losskit.train import ddp
from losskit.train.checkpoint import load_latest, save_checkpoint
from losskit.train.config import TrainConfig, validate_train_config
from losskit.train.data.base import BadImageError
from losskit.train.data.loader import Splits, build_splits, image_batches, normalize_images, train_loader
from losskit.train.evaluation import chance_recall, recall_at_k
from losskit.train.metrics import MetricsLog, Progress, plot_metrics, read_metrics
from losskit.train.models import DualEncoder, TextTransformer, build_image_encoder
from losskit.train.optim import build_optimizer, lr_factor, set_learning_rates, stage_at

__all__ = ["TrainResult", "build_model", "evaluate", "train"]


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank; recalls are computed on rank 0)."""

    run_dir: Path
    steps: int
    before: dict[str, float]
    after: dict[str, float]
    chance: dict[str, float]
    final_loss: float
    skipped: list[str] = field(default_factory=list)


def build_model(config: TrainConfig) -> DualEncoder:
    """The :class:`DualEncoder` described by ``config.model`` (random init, seeded by the caller)."""
    m = config.model
    image, image_width = build_image_encoder(
        m.image_encoder, image_size=config.data.image_size, weights=m.image_weights, width=m.image_width
    )
    text = TextTransformer(
        width=m.text_width,
        layers=m.text_layers,
        heads=m.text_heads,
        max_length=config.data.max_text_length,
        downsample=m.text_downsample,
    )
    return DualEncoder(image, image_width, text, m.text_width, m.embed_dim, normalize=m.normalize)


class Objective(nn.Module):
    """Model + loss in one module (what DDP wraps): ``(images uint8, tokens, groups) -> (loss, parts, metrics)``.

    The loss is called as ``loss.compute(image_features [B, E], text_features [B, E],
    group_ids=[B])`` (``clip``, ``siglip``; ``infonce`` takes images as queries); a
    ``mixture`` gets those inputs for every term. Features are gathered across ranks
    here unless the loss gathers them itself (a ``distributed`` config field).
    """

    def __init__(self, model: DualEncoder, loss: nn.Module, *, gather: bool) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.gather = gather

    def forward(self, images: Tensor, tokens: Tensor, groups: Tensor) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        image_features, text_features = self.model(normalize_images(images), tokens)  # [B, E], [B, E]
        if self.gather:
            image_features = kdist.all_gather_with_grad(image_features, name="image_features")  # [W*B, E]
            text_features = kdist.all_gather_with_grad(text_features, name="text_features")
            groups = kdist.all_gather_no_grad(groups, name="group_ids")
        inputs = losskit.Inputs((image_features, text_features), {"group_ids": groups})
        terms = getattr(self.loss, "terms", None)
        if isinstance(terms, nn.ModuleDict):  # a mixture: every term gets the same contrastive inputs
            out = self.loss.compute({name: inputs for name in terms})
        else:
            out = self.loss.compute(*inputs.args, **inputs.kwargs)
        return out.loss, out.parts, out.metrics


def _gathers_itself(loss: nn.Module) -> bool:
    """Whether the loss (or, for a mixture, one of its terms) has a ``distributed`` config field."""
    if "distributed" in type(loss.config).model_fields:
        return True
    terms = getattr(loss, "terms", None)
    return isinstance(terms, nn.ModuleDict) and any(_gathers_itself(t) for t in terms.values())


def _build_loss(config: TrainConfig, context: ddp.DistContext) -> tuple[nn.Module, bool]:
    """The loss from the registry; whether the trainer must gather features itself."""
    loss = losskit.build(config.loss_config())
    return loss, context.distributed and not _gathers_itself(loss)


@torch.no_grad()
def evaluate(
    model: DualEncoder, splits: Splits, config: TrainConfig, device: torch.device, skipped: list[str]
) -> dict[str, float]:
    """Group-aware recall@K on the validation split (images that fail to load follow ``on_bad_image``)."""
    was_training = model.training
    model.eval()
    val = splits.val
    bs = config.eval.batch_size
    image_feats, bad_images = [], []
    for images, bad in image_batches(val, bs):
        if bad and config.data.on_bad_image == "raise":
            raise BadImageError(f"cannot read validation image {val.images.describe(bad[0])}")
        bad_images += bad
        skipped += [f for f in (val.images.describe(i) for i in bad) if f not in skipped]
        if len(images):
            image_feats.append(model.encode_image(normalize_images(images.to(device))).float().cpu())
    tokens = splits.val_tokens
    text_feats = [model.encode_text(tokens[s : s + bs].to(device)).float().cpu() for s in range(0, len(tokens), bs)]
    keep_images = torch.ones(len(val.images), dtype=torch.bool)
    keep_images[bad_images] = False
    keep_texts = keep_images[val.caption_image]
    model.train(was_training)
    return recall_at_k(
        torch.cat(image_feats),
        torch.cat(text_feats)[keep_texts],
        val.image_group[keep_images],
        val.caption_group[keep_texts],
        ks=config.eval.ks,
    )


def _rng_state(device: torch.device) -> dict[str, Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _pad_batch(batch: dict[str, Any], size: int) -> dict[str, Any]:
    """Repeat items of a short batch (same group id: positives, never negatives) so every rank gathers ``size`` rows."""
    n = batch["images"].shape[0]
    if n == size:
        return batch
    idx = torch.arange(size) % n
    return {**batch, "images": batch["images"][idx], "tokens": batch["tokens"][idx], "groups": batch["groups"][idx]}


def _floats(values: dict[str, Tensor]) -> dict[str, float]:
    return {k: float(v.detach().float().mean()) for k, v in values.items()}


def _new_run_dir() -> Path:
    return Path("runs") / datetime.now().strftime("train-%Y%m%d-%H%M%S-%f")


def _summary_table(before: dict[str, float], after: dict[str, float], chance: dict[str, float], ks: list[int]) -> str:
    lines = [f"{'recall':<15}{'chance':>8}{'before':>8}{'after':>8}"]
    for direction, label in (("i2t", "image→text"), ("t2i", "text→image")):
        for k in ks:
            key = f"{direction}_r{k}"
            ref = f"{chance[f'{direction}_r1']:.3f}" if k == 1 else ""
            lines.append(f"{label + f' R@{k}':<15}{ref:>8}{before.get(key, float('nan')):>8.3f}{after[key]:>8.3f}")
    return "\n".join(lines)


def train(config: TrainConfig | None = None, *, resume: str | Path | None = None, quiet: bool = False) -> TrainResult:
    """Train a dual encoder as ``config`` says (``None``: all defaults).

    ``resume``: a run directory to continue from its newest loadable checkpoint (the
    config then comes from the checkpoint and ``config`` must be ``None``).

    Writes the run directory (``config.yaml``, ``metrics.jsonl``, ``checkpoints/``,
    ``curves.png``) on rank 0 and prints the before/after recalls.
    """
    if resume is not None:
        if config is not None:
            raise ValueError("config: must be None with resume= (the run's own config is used)")
        run_dir = Path(resume)
        path, checkpoint = load_latest(run_dir / "checkpoints")
        config = validate_train_config(checkpoint["config"])
    else:
        config = config if config is not None else TrainConfig()
        run_dir = Path(config.run_dir) if config.run_dir else _new_run_dir()
        checkpoint, path = None, None
    context = ddp.setup(config.device)
    threads = torch.get_num_threads()
    if context.device.type == "cpu" and config.cpu_threads is not None:
        torch.set_num_threads(config.cpu_threads)
    try:
        return _train(config, context, run_dir, checkpoint, path, quiet)
    finally:
        torch.set_num_threads(threads)
        ddp.teardown(context)


def _train(
    config: TrainConfig,
    context: ddp.DistContext,
    run_dir: Path,
    checkpoint: dict[str, Any] | None,
    checkpoint_path: Path | None,
    quiet: bool,
) -> TrainResult:
    device = context.device
    main = context.is_main
    torch.manual_seed(config.seed)
    splits = build_splits(config.data, seed=config.seed)
    model = build_model(config)
    loss, trainer_gathers = _build_loss(config, context)
    curriculum = losskit.Curriculum(loss, config.curriculum) if config.curriculum else None
    objective = Objective(model, loss, gather=trainer_gathers).to(device)
    optimizer = build_optimizer(model, loss, config.optim)
    runner: nn.Module = objective
    if context.distributed:
        runner = nn.parallel.DistributedDataParallel(
            objective,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=any(s.freeze for s in config.stages),
        )
    if config.compile:
        runner = torch.compile(runner)  # type: ignore[assignment]
    loader, sampler = train_loader(
        splits,
        config.data,
        seed=config.seed,
        num_replicas=context.world_size,
        rank=context.rank,
        pin_memory=device.type == "cuda",
    )
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    )

    step, epoch, position = 0, 0, 0
    skipped: list[str] = list(splits.train.skipped) + list(splits.val.skipped)
    before: dict[str, float] = {}
    log = MetricsLog(run_dir / "metrics.jsonl")
    if checkpoint is not None:
        objective.load_state_dict(checkpoint["objective"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if curriculum is not None:
            curriculum.load_state_dict(checkpoint["curriculum"])
        step, epoch, position = checkpoint["step"], checkpoint["epoch"], checkpoint["position"]
        before = checkpoint["before"]
        skipped = checkpoint["skipped"]
        _set_rng_state(checkpoint["rng"], device)
        if main:
            log.truncate_after(step)
    elif main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        log.path.write_text("")

    progress = Progress(config.progress, config.steps, step, enabled=main and not quiet)
    if checkpoint_path is not None:
        progress.message(f"resumed from {checkpoint_path} (step {step})")
    if checkpoint is None:
        if main:
            before = evaluate(model, splits, config, device, skipped)
            log.write({"step": 0, "eval": before})
        ddp.barrier(context)

    def save() -> None:
        if main:
            state = {
                "objective": objective.state_dict(),
                "optimizer": optimizer.state_dict(),
                "curriculum": curriculum.state_dict() if curriculum is not None else None,
                "rng": _rng_state(device),
                "step": step,
                "epoch": epoch,
                "position": position,
                "before": before,
                "skipped": skipped,
                "config": config.model_dump(mode="json"),
            }
            save_checkpoint(run_dir / "checkpoints", step, state, keep=config.checkpoint.keep)
        ddp.barrier(context)

    accum = config.optim.accum_steps
    micro = 0
    last_loss = float("nan")
    window_start, window_samples = time.perf_counter(), 0
    stage_index = -1
    objective.train()
    while step < config.steps:
        sampler.set_epoch(epoch)
        sampler.set_start(position * config.data.batch_size)
        for batch in loader:
            position += 1
            if batch["bad"]:
                if config.data.on_bad_image == "raise":
                    raise BadImageError(batch["bad"][0])
                skipped += [f for f in batch["bad_files"] if f not in skipped]
            if batch["images"] is None:
                continue
            if micro == 0:
                index, stage = stage_at(config.stages, step)
                if index != stage_index:
                    stage_index = index
                    model.set_frozen(set(stage.freeze))
                lrs = set_learning_rates(optimizer, lr_factor(step, config.steps, config.optim) * stage.lr_scale)
                if curriculum is not None:
                    curriculum.step(step)
                step_loss, parts, metrics = 0.0, {}, {}
            if context.distributed:
                batch = _pad_batch(batch, config.data.batch_size)
            images = batch["images"].to(device, non_blocking=True)
            tokens = batch["tokens"].to(device, non_blocking=True)
            groups = batch["groups"].to(device, non_blocking=True)
            sync = micro == accum - 1 or not context.distributed
            with contextlib.nullcontext() if sync else runner.no_sync():  # type: ignore[operator]
                with autocast():  # the forward only: backward runs outside autocast (PyTorch AMP recipe)
                    value, parts_t, metrics_t = runner(images, tokens, groups)
                (value / accum).backward()
            if not torch.isfinite(value):
                raise LosskitError(f"the loss became {float(value)} at step {step + 1}; lower optim.lr or check the data")
            step_loss += float(value.detach()) / accum
            parts, metrics = _floats(parts_t), _floats(metrics_t)
            window_samples += images.shape[0] * context.world_size
            micro += 1
            if micro < accum:
                continue
            micro = 0
            if config.optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(objective.parameters(), config.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            last_loss = step_loss
            log_now = step % config.log_every == 0 or step == config.steps
            if log_now and main:
                elapsed = time.perf_counter() - window_start
                record = {
                    "step": step,
                    "epoch": epoch,
                    "loss": step_loss,
                    "parts": parts,
                    "metrics": metrics,
                    "lr": lrs,
                    "samples_per_s": window_samples / max(elapsed, 1e-9),
                }
                log.write(record)
                window_start, window_samples = time.perf_counter(), 0
            progress.update(step, {"loss": step_loss}, log_now)
            if config.eval.every and step % config.eval.every == 0 and step < config.steps:
                if main:
                    result = evaluate(model, splits, config, device, skipped)
                    log.write({"step": step, "eval": result})
                    progress.message(f"step {step}: " + " ".join(f"{k} {v:.3f}" for k, v in result.items()))
                ddp.barrier(context)
            if config.checkpoint.every and step % config.checkpoint.every == 0 and step < config.steps:
                save()
            if step >= config.steps:
                break
        else:
            epoch, position = epoch + 1, 0
    progress.close()
    after: dict[str, float] = {}
    chance = chance_recall(splits.val.image_group, splits.val.caption_group)
    if main:
        after = evaluate(model, splits, config, device, skipped)
        log.write({"step": step, "eval": after})
    save()
    if main:
        plot_metrics(read_metrics(log.path), run_dir / "curves.png", title=f"loss: {config.loss.get('name')}")
        if not quiet:
            val = splits.val
            print(
                f"validation split: {len(val.images)} images, {len(val.captions)} captions, "
                f"{val.num_groups()} groups; {step} steps"
            )
            print(_summary_table(before, after, chance, config.eval.ks))
            if skipped:
                print(f"skipped {len(skipped)} unreadable image(s): " + ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
            print(f"run directory: {run_dir}")
    return TrainResult(run_dir, step, before, after, chance, last_loss, skipped)
