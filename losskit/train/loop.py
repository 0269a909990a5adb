"""The training loop of ``losskit train``: :func:`train`.

One optimiser step = ``optim.accum_steps`` micro-batches of ``data.batch_size`` pairs
per process. Every piece of state that decides what happens next (model, loss,
optimizer, curriculum, RNG, the :class:`~losskit.train.state.RunState`) is in the
checkpoint, and the learning rate is a pure function of the step, so ``--resume``
continues exactly. The parts: :func:`~losskit.train.session.build_session` (setup),
:func:`~losskit.train.resume.restore` (resume), :func:`_micro_step` (one step) and
:func:`_after_step` / :func:`_finish` (log, evaluate, checkpoint).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from losskit.errors import LosskitError
from losskit.train import ddp
from losskit.train.checkpoint import save_checkpoint
from losskit.train.config import TrainConfig
from losskit.train.data.base import BadImageError
from losskit.train.evaluation import chance_recall
from losskit.train.metrics import Progress, plot_metrics, read_metrics
from losskit.train.objective import build_model
from losskit.train.optim import lr_factor, set_learning_rates, stage_at
from losskit.train.report import learned_values, summary_table
from losskit.train.resume import restore
from losskit.train.rundir import config_hash, new_run_dir, prepare_new_run, read_run_config, write_run_config
from losskit.train.session import Session, build_session
from losskit.train.state import get_rng_state
from losskit.train.validation import evaluate

__all__ = ["TrainResult", "build_model", "evaluate", "train"]


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank; recalls are computed on rank 0).

    ``learned``: the final value of each learnable loss field (``Loss.learned_values()``,
    e.g. ``{"temperature": 0.03}``).
    """

    run_dir: Path
    steps: int
    before: dict[str, float]
    after: dict[str, float]
    chance: dict[str, float]
    final_loss: float
    skipped: list[str] = field(default_factory=list)
    learned: dict[str, float] = field(default_factory=dict)


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    quiet: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train a dual encoder as ``config`` says (``None``: all defaults).

    Args:
        config: the run's config; must be ``None`` with ``resume``.
        resume: a run directory to continue from its newest usable checkpoint, with the
            run's own ``config.yaml`` (that config wins; checkpoints written under
            another config are refused). A finished run is reported, not trained again.
        quiet: print nothing (rank 0 prints progress and the summary otherwise).
        overwrite: a new run may replace the run files of a non-empty ``run_dir``
            (otherwise such a folder is refused).

    Writes the run directory (``config.yaml``, ``metrics.jsonl``, ``checkpoints/``,
    ``curves.png``) on rank 0 and prints the before/after recalls.

    Raises:
        RunDirError: a new run in a non-empty folder, or a resume of a folder that is not a run.
        CheckpointError: nothing usable to resume, or a checkpoint that cannot be written.
    """
    if resume is not None:
        if config is not None:
            raise ValueError("config: must be None with resume= (the run's own config.yaml is used)")
        run_dir = Path(resume)
        config = read_run_config(run_dir)
    else:
        config = config if config is not None else TrainConfig()
        run_dir = Path(config.run_dir) if config.run_dir else new_run_dir()
        prepare_new_run(run_dir, overwrite=overwrite, delete=False)  # every rank, before any rank writes
    context = ddp.setup(config.device)
    threads = torch.get_num_threads()
    if context.device.type == "cpu" and config.cpu_threads is not None:
        torch.set_num_threads(config.cpu_threads)
    try:
        session = build_session(config, context, run_dir)
        return _run(session, resume is not None, quiet, overwrite)
    finally:
        torch.set_num_threads(threads)
        ddp.teardown(context)


def _run(s: Session, resuming: bool, quiet: bool, overwrite: bool) -> TrainResult:
    progress_enabled = s.main and not quiet
    if progress_enabled:
        print(f"run directory: {s.run_dir}", flush=True)
    if resuming:
        path = restore(s)
        if progress_enabled:
            print(f"resumed from {path} (step {s.state.step}) with the run's config.yaml", flush=True)
        if s.state.after:
            return _report(s, quiet, note=f"the run finished at step {s.state.step} already; nothing to train")
    else:
        if s.main:
            prepare_new_run(s.run_dir, overwrite=overwrite, delete=True)
            write_run_config(s.run_dir, s.config)
            s.state.before = evaluate(s.model, s.splits, s.config, s.device, s.state.skipped)
            s.log.write({"step": 0, "eval": s.state.before})
        ddp.barrier(s.context)
    progress = Progress(s.config.progress, s.config.steps, s.state.step, enabled=progress_enabled)
    _train_steps(s, progress)
    progress.close()
    return _finish(s, quiet)


def _train_steps(s: Session, progress: Progress) -> None:
    """Epochs of micro-steps until ``config.steps`` optimiser steps are done."""
    s.objective.train()
    while s.state.step < s.config.steps:
        s.sampler.set_epoch(s.state.epoch)
        s.sampler.set_start(s.state.position * s.config.data.batch_size)
        whole_epoch, readable = s.state.position == 0, False
        for batch in s.loader:
            s.state.position += 1
            if not _usable(s, batch):
                continue
            readable = True
            if _micro_step(s, batch) and _after_step(s, progress):
                return
        if whole_epoch and not readable:
            train = s.splits.train
            raise LosskitError(
                f"no readable training images in {train.source}: every image of an epoch failed to load "
                f"({len(train.images)} images, e.g. {train.images.describe(0)}); with data.on_bad_image=skip "
                "there is nothing to train on"
            )
        s.state.epoch, s.state.position = s.state.epoch + 1, 0


def _usable(s: Session, batch: dict[str, Any]) -> bool:
    """Apply ``on_bad_image`` to the batch's unreadable images; whether any image is left."""
    if batch["bad"]:
        if s.config.data.on_bad_image == "raise":
            raise BadImageError(batch["bad"][0])
        s.state.skip(batch["bad_files"])
    return batch["images"] is not None


def _pad_batch(batch: dict[str, Any], size: int) -> dict[str, Any]:
    """Repeat items of a short batch (same group id: positives, never negatives) so every rank gathers ``size`` rows."""
    n = batch["images"].shape[0]
    if n == size:
        return batch
    idx = torch.arange(size) % n
    return {**batch, "images": batch["images"][idx], "tokens": batch["tokens"][idx], "groups": batch["groups"][idx]}


def _floats(values: dict[str, Tensor]) -> dict[str, float]:
    return {k: float(v.detach().float().mean()) for k, v in values.items()}


def _begin_step(s: Session) -> None:
    """Stage (freezing), learning rates and curriculum for the step about to run."""
    w, step = s.window, s.state.step
    index, stage = stage_at(s.config.stages, step)
    if index != w.stage_index:
        w.stage_index = index
        s.model.set_frozen(set(stage.freeze))
    w.lrs = set_learning_rates(s.optimizer, lr_factor(step, s.config.steps, s.config.optim) * stage.lr_scale)
    if s.curriculum is not None:
        s.curriculum.step(step)
    w.loss = 0.0


def _micro_step(s: Session, batch: dict[str, Any]) -> bool:
    """Forward and backward one micro-batch; an optimiser step after ``accum_steps`` of them (returns True then)."""
    w, accum = s.window, s.config.optim.accum_steps
    if w.micro == 0:
        _begin_step(s)
    if s.context.distributed:
        batch = _pad_batch(batch, s.config.data.batch_size)
    images, tokens, groups = (batch[k].to(s.device, non_blocking=True) for k in ("images", "tokens", "groups"))
    sync = w.micro == accum - 1 or not s.context.distributed
    autocast = torch.autocast(s.device.type, dtype=torch.bfloat16) if s.use_bf16 else contextlib.nullcontext()
    with contextlib.nullcontext() if sync else s.runner.no_sync():  # type: ignore[operator]
        with autocast:  # the forward only: backward runs outside autocast (PyTorch AMP recipe)
            value, parts, metrics = s.runner(images, tokens, groups)
        (value / accum).backward()
    if not torch.isfinite(value):
        raise LosskitError(f"the loss became {float(value)} at step {s.state.step + 1}; lower optim.lr or check the data")
    w.loss += float(value.detach()) / accum
    w.parts, w.metrics = _floats(parts), _floats(metrics)
    w.samples += images.shape[0] * s.context.world_size
    w.micro += 1
    if w.micro < accum:
        return False
    w.micro = 0
    if s.config.optim.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(s.objective.parameters(), s.config.optim.grad_clip)
    s.optimizer.step()
    s.optimizer.zero_grad(set_to_none=True)
    s.state.step += 1
    w.last_loss = w.loss
    return True


def _after_step(s: Session, progress: Progress) -> bool:
    """Log, evaluate and checkpoint after an optimiser step as configured; whether training is done."""
    config, step, w = s.config, s.state.step, s.window
    log_now = step % config.log_every == 0 or step == config.steps
    if log_now and s.main:
        elapsed = time.perf_counter() - w.started
        s.log.write({"step": step, "epoch": s.state.epoch, "loss": w.loss, "parts": w.parts, "metrics": w.metrics,
                     "lr": w.lrs, "samples_per_s": w.samples / max(elapsed, 1e-9)})  # fmt: skip
        w.started, w.samples = time.perf_counter(), 0
    progress.update(step, {"loss": w.loss}, log_now)
    done = step >= config.steps
    every = config.eval.interval(config.steps)
    if every and step % every == 0 and not done:
        if s.main:
            result = evaluate(s.model, s.splits, config, s.device, s.state.skipped)
            s.log.write({"step": step, "eval": result})
            progress.message(f"step {step}: " + " ".join(f"{k} {v:.3f}" for k, v in result.items()))
        ddp.barrier(s.context)
    if config.checkpoint.every and step % config.checkpoint.every == 0 and not done:
        _save(s)
    return done


def _save(s: Session) -> None:
    """Rank 0 writes a checkpoint of the session (every rank waits for it)."""
    if s.main:
        state = {
            "objective": s.objective.state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "curriculum": s.curriculum.state_dict() if s.curriculum is not None else None,
            "rng": get_rng_state(s.device),
            **s.state.to_dict(),
            "config": s.config.model_dump(mode="json"),
            "config_hash": config_hash(s.config),
        }
        save_checkpoint(s.run_dir / "checkpoints", s.state.step, state, keep=s.config.checkpoint.keep)
    ddp.barrier(s.context)


def _finish(s: Session, quiet: bool) -> TrainResult:
    """The final evaluation, the last checkpoint, the plot and the summary."""
    if s.main:
        s.state.after = evaluate(s.model, s.splits, s.config, s.device, s.state.skipped)
        s.log.write({"step": s.state.step, "eval": s.state.after})
    _save(s)
    if s.main:
        plot_metrics(read_metrics(s.log.path), s.run_dir / "curves.png", title=f"loss: {s.config.loss.get('name')}")
    return _report(s, quiet)


def _report(s: Session, quiet: bool, note: str = "") -> TrainResult:
    """Print the summary (rank 0, unless ``quiet``) and build the result."""
    val = s.splits.val
    chance = chance_recall(val.image_group, val.caption_group)
    state = s.state
    if s.main and not quiet:
        if note:
            print(note)
        print(f"validation split: {len(val.images)} images, {len(val.captions)} captions, {val.num_groups()} groups; {state.step} steps")
        print(summary_table(state.before, state.after, chance, s.config.eval.ks))
        if state.skipped:
            more = " ..." if len(state.skipped) > 5 else ""
            print(f"skipped {len(state.skipped)} unreadable image(s): " + ", ".join(state.skipped[:5]) + more)
        print(f"run directory: {s.run_dir}")
    final_loss = s.window.last_loss
    if final_loss != final_loss and s.main:  # a finished run resumed: nothing trained here, its last logged step tells
        last = [r for r in read_metrics(s.log.path) if "loss" in r][-1:]
        final_loss = last[0]["loss"] if last else final_loss
    learned = learned_values(s.loss)
    return TrainResult(s.run_dir, state.step, state.before, state.after, chance, final_loss, list(state.skipped), learned)
