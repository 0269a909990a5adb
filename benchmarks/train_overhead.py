"""Trainer overhead: steps/s of `losskit train` vs a minimal hand-written PyTorch loop.

Both train the same model (the default compact CNN + byte Transformer, same seed) with
the same loss (`clip` from the registry), the same AdamW groups, gradient clipping and
learning-rate schedule, on the same generated data and batch size. The trainer's rate
is taken from its own `metrics.jsonl` windows (`samples_per_s`, evaluation excluded,
first window dropped as warm-up); the hand loop is timed over the same steps. Runs
alternate (trainer, hand, trainer, hand, ...) so machine load drifts hit both; the
ratio of medians is reported.

    python benchmarks/train_overhead.py                  # writes benchmarks/results/train_overhead.json
    python benchmarks/train_overhead.py --steps 60 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import losskit
from losskit.train.config import load_train_config
from losskit.train.data.loader import build_splits, normalize_images
from losskit.train.loop import build_model, train
from losskit.train.metrics import read_metrics
from losskit.train.optim import build_optimizer, lr_factor, set_learning_rates
from losskit.train.tokenizer import ByteTokenizer

RESULTS = Path(__file__).resolve().parent / "results"


def trainer_rate(steps: int, log_every: int, workdir: Path, overrides: list[str]) -> float:
    config = load_train_config(
        None, [f"steps={steps}", f"log_every={log_every}", f"run_dir={workdir}", "progress=log", *overrides]
    )
    train(config, quiet=True)
    windows = [r["samples_per_s"] for r in read_metrics(workdir / "metrics.jsonl") if "loss" in r][1:]
    return statistics.median(windows) / config.data.batch_size  # steps/s


def hand_rate(steps: int, warmup: int, overrides: list[str]) -> float:
    config = load_train_config(None, [f"steps={steps}", *overrides])
    torch.manual_seed(config.seed)
    splits = build_splits(config.data, seed=config.seed)
    model = build_model(config)
    loss_fn = losskit.build(config.loss_config())
    optimizer = build_optimizer(model, loss_fn, config.optim)
    pixels = splits.train.images.pixels  # type: ignore[attr-defined]
    groups = splits.train.caption_group
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(splits.train.captions), generator=generator)
    bs = config.data.batch_size
    start = 0.0
    for step in range(steps + warmup):
        if step == warmup:
            start = time.perf_counter()
        idx = order[(step * bs) % (len(order) - bs) :][:bs]
        tokens = splits.train_tokens[idx]
        tokens = tokens[:, : int((tokens != ByteTokenizer.PAD).sum(1).max())]
        set_learning_rates(optimizer, lr_factor(step, steps + warmup, config.optim))
        image_features, text_features = model(normalize_images(pixels[splits.train.caption_image[idx]]), tokens)
        loss = loss_fn(image_features, text_features, group_ids=groups[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*model.parameters(), *loss_fn.parameters()], config.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override (both loops)")
    parser.add_argument("--out", default=str(RESULTS / "train_overhead.json"))
    args = parser.parse_args()
    log_every = 10
    trainer, hand = [], []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            trainer.append(trainer_rate(args.steps + log_every, log_every, Path(tmp) / f"t{r}", args.overrides))
            hand.append(hand_rate(args.steps, log_every, args.overrides))
            print(f"repeat {r}: trainer {trainer[-1]:.2f} steps/s, hand loop {hand[-1]:.2f} steps/s", flush=True)
    result = {
        "benchmark": "train_overhead",
        "command": "python benchmarks/train_overhead.py " + " ".join(f"--set {o}" for o in args.overrides),
        "steps_per_run": args.steps,
        "trainer_steps_per_s": trainer,
        "hand_loop_steps_per_s": hand,
        "ratio_of_medians": statistics.median(trainer) / statistics.median(hand),
        "target": ">= 0.95",
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"trainer / hand loop = {result['ratio_of_medians']:.3f} (median of {args.repeats}); written to {args.out}")


if __name__ == "__main__":
    main()
