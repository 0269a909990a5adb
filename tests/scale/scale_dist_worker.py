"""Worker of tests/scale/test_scale_distributed.py (a plain module so spawned processes can import it).

Every process builds the same global batch from a seed, keeps its shard, runs the loss
with ``distributed="gather"`` over a gloo process group and saves the loss and the
gradients it sees.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

import losskit.distributed
import losskit_plugins.contrastive
from losskit.registry import Registry

# only the plugin under test: spawned processes skip importing the other plugins (torchvision, ...)
REGISTRY = Registry(autoload=False)
REGISTRY.add_plugin(losskit_plugins.contrastive, "contrastive", bundled=True)

SHARD = 3  # samples per rank
DIM = 4

NEGATIVES = 2  # explicit infonce negatives: [NEGATIVES, DIM] shared, or [n, NEGATIVES, DIM] per query

#: (loss name, config, with group ids, explicit negatives: None, "shared" (the same on every
#: rank, not gathered) or "paired" (each rank the rows of its queries))
CASES = [
    ("clip", {"local_loss": False}, False, None),
    ("clip", {"local_loss": True}, False, None),
    ("clip", {"local_loss": True, "chunk_size": 2, "label_smoothing": 0.1, "logit_bias": -1.0}, True, None),
    ("clip", {"local_loss": False, "chunk_size": 5, "direction": "image_to_text"}, True, None),
    ("clip", {"local_loss": True, "hard_negative_beta": 0.5, "debias_tau_plus": 0.1}, True, None),
    ("siglip", {"local_loss": True}, False, None),
    ("siglip", {"local_loss": False, "chunk_size": 4}, True, None),
    ("infonce", {"local_loss": True, "symmetric": True, "learnable_temperature": True}, False, None),
    ("infonce", {"local_loss": False, "symmetric": True, "chunk_size": 3}, True, None),
    ("infonce", {"local_loss": True, "chunk_size": 2, "learnable_temperature": True}, False, "shared"),
    ("infonce", {"local_loss": True, "label_smoothing": 0.1}, True, "shared"),
    ("infonce", {"local_loss": True, "hard_negative_beta": 0.5, "learnable_temperature": True}, True, "paired"),
]


def global_batch(case: int, world: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``[world * SHARD, DIM]`` features (float64), global group ids and the case's explicit
    negatives (``[NEGATIVES, DIM]`` shared, ``[world * SHARD, NEGATIVES, DIM]`` per query, or None),
    the same in every process."""
    g = torch.Generator().manual_seed(1000 + case)
    n = world * SHARD
    img = torch.randn(n, DIM, generator=g, dtype=torch.float64)
    txt = img + 0.5 * torch.randn(n, DIM, generator=g, dtype=torch.float64)
    groups = torch.randint(0, max(2, n // 2), (n,), generator=g)
    kind = CASES[case][3]
    shape = (NEGATIVES, DIM) if kind == "shared" else (n, NEGATIVES, DIM)
    negs = None if kind is None else torch.randn(*shape, generator=g, dtype=torch.float64)
    return img, txt, groups, negs


def run_case(case: int, img: torch.Tensor, txt: torch.Tensor, groups: torch.Tensor, negs: torch.Tensor | None, distributed: str) -> dict:
    """Loss and gradients (features, explicit negatives, loss parameters) of one case on the given rows."""
    name, cfg, with_groups, _ = CASES[case]
    loss_fn = REGISTRY.build(name, distributed=distributed, **cfg).double()
    img, txt = img.clone().requires_grad_(), txt.clone().requires_grad_()
    inputs = [img, txt] + ([] if negs is None else [negs.clone().requires_grad_()])
    kwargs = {"group_ids": groups} if with_groups else {}
    loss = loss_fn(*inputs, **kwargs)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in loss_fn.named_parameters()}
    losskit.distributed.average_gradients(loss_fn)  # what DDP does for the model's parameters
    return {
        "loss": loss.detach(),
        "img_grad": img.grad,
        "txt_grad": txt.grad,
        "neg_grad": None if negs is None else inputs[2].grad,
        "param_grads": grads,
        "param_grads_averaged": {n: p.grad for n, p in loss_fn.named_parameters()},
    }


def _refusal(call) -> str:
    """The ``ValueError`` message ``call()`` raises ("" if it does not)."""
    try:
        call()
    except ValueError as exc:
        return str(exc)
    return ""


def worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        results = []
        rows = slice(rank * SHARD, (rank + 1) * SHARD)
        for case in range(len(CASES)):
            img, txt, groups, negs = global_batch(case, world)
            if negs is not None and negs.dim() == 3:
                negs = negs[rows]
            mode = "auto" if case % 2 else "gather"  # auto: gathers since world size > 1
            results.append(run_case(case, img[rows], txt[rows], groups[rows], negs, mode))
        try:  # shards of different sizes are refused on every rank (no hang)
            losskit.distributed.all_gather_with_grad(torch.zeros(rank + 1, 2), name="image_features")
            mismatch = ""
        except ValueError as exc:
            mismatch = str(exc)
        q, k, mask = torch.randn(2, 3), torch.randn(2, 3), torch.eye(2, dtype=torch.bool)
        global_rows = REGISTRY.build("infonce", distributed="gather")
        local_rows = REGISTRY.build("infonce", distributed="gather", local_loss=True)
        refused = [
            # explicit negatives belong to this rank's queries: refused when every rank scores all rows
            _refusal(lambda: global_rows(q, k, torch.randn(4, 3))),
            # a local [n, n] mask cannot say which gathered keys are positives: use global group ids
            _refusal(lambda: local_rows(q, k, positive_mask=mask)),
        ]
        torch.save({"cases": results, "mismatch": mismatch, "refused": refused}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
