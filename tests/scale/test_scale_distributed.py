"""Multi-process correctness: real torch.distributed (gloo, CPU), 2 and 4 processes, each
with its shard, against one process on the concatenated batch.

Gradient scaling checked (see docs/scaling.md): on every rank the loss parameters'
gradient, averaged over ranks (what DDP does), equals the single-process gradient; the
features' gradient on a rank equals ``world_size`` x the single-process gradient of its
rows (DDP's 1/world_size averaging of the encoder's gradients cancels that factor).
Explicit ``infonce`` negatives are not gathered: per-query ones ``[n, M, D]`` scale like the
features; shared ones ``[M, D]`` (the same on every rank) like the loss parameters.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
import scale_dist_worker as W  # noqa: E402

pytestmark = pytest.mark.slow


def _run(world: int, tmp_path: Path, limit_s: float = 150.0) -> list[list[dict]]:
    init = tmp_path / "init"
    ctx = mp.start_processes(W.worker, args=(world, str(init), str(tmp_path)), nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + limit_s
    while not ctx.join(timeout=2):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"{world} gloo processes did not finish within {limit_s:.0f} s")
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]


def _check_refusals(outputs: list[dict]) -> None:
    for out in outputs:
        assert out["mismatch"].startswith("image_features: every rank must pass the same shape"), out["mismatch"]
        negatives, mask = out["refused"]
        assert negatives.startswith("negative_keys: with distributed gathering") and "local_loss=true" in negatives
        assert mask.startswith("positive_mask: not supported when gathering") and "group_ids" in mask


@pytest.mark.parametrize("world", [2, 4])
def test_gathered_losses_match_single_process(tmp_path, world):
    outputs = _run(world, tmp_path)
    _check_refusals(outputs)
    per_rank = [out["cases"] for out in outputs]
    for case, (name, cfg, _, negatives) in enumerate(W.CASES):
        img, txt, groups, negs = W.global_batch(case, world)
        want = W.run_case(case, img, txt, groups, negs, "none")
        label = f"{name} {cfg} world={world}"
        losses = torch.stack([per_rank[r][case]["loss"] for r in range(world)])
        if cfg["local_loss"]:
            # each rank: mean over its rows; the global loss is their mean
            torch.testing.assert_close(losses.mean(), want["loss"], rtol=1e-10, atol=1e-12, msg=label)
        else:
            for r in range(world):
                torch.testing.assert_close(losses[r], want["loss"], rtol=1e-10, atol=1e-12, msg=label)
        for r in range(world):
            rows = slice(r * W.SHARD, (r + 1) * W.SHARD)
            for key in ("img_grad", "txt_grad") + (("neg_grad",) if negatives == "paired" else ()):
                got = per_rank[r][case][key] / world
                torch.testing.assert_close(got, want[key][rows], rtol=1e-9, atol=1e-12, msg=f"{label} rank {r} {key}")
        if negatives == "shared":
            avg = torch.stack([per_rank[r][case]["neg_grad"] for r in range(world)]).mean(0)
            torch.testing.assert_close(avg, want["neg_grad"], rtol=1e-9, atol=1e-12, msg=f"{label} neg_grad")
        for pname, g in want["param_grads"].items():
            avg = torch.stack([per_rank[r][case]["param_grads"][pname] for r in range(world)]).mean(0)
            torch.testing.assert_close(avg, g, rtol=1e-9, atol=1e-12, msg=f"{label} {pname}")
            for r in range(world):  # losskit.distributed.average_gradients gives every rank that mean
                got = per_rank[r][case]["param_grads_averaged"][pname]
                torch.testing.assert_close(got, g, rtol=1e-9, atol=1e-12, msg=f"{label} {pname} averaged")
