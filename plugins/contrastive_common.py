"""What ``clip``, ``siglip`` and ``infonce`` share: input checks, the learnable
temperature / bias, the cross-process layout of the similarity matrix, and metrics."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import losskit
from losskit import distributed as dist
from losskit.checks import check_float, check_index, check_same_device, check_size, to_float32
from losskit_plugins.contrastive_config import ContrastiveConfig
from losskit_plugins.contrastive_pairs import Pairs

__all__ = [
    "ContrastiveLoss",
    "accuracy",
    "dtype_of",
    "mean_logits",
    "Layout",
    "check_features",
    "check_group_ids",
    "layout",
    "prepare",
]

C = TypeVar("C", bound=ContrastiveConfig)


# ---------------------------------------------------------------- input checks
def check_features(a: object, b: object, name_a: str, name_b: str) -> tuple[Tensor, Tensor]:
    """Check two ``[B, D]`` float feature matrices of one shape; return them."""
    check_float(a, name_a, 2, layout="[B, D]")
    check_float(b, name_b, 2, layout="[B, D]")
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    if a.shape[0] == 0:
        raise ValueError(f"{name_a}: expected a batch of at least 1 sample, got shape {tuple(a.shape)}")
    check_size(b, name_b, 0, a.shape[0], f"the batch size of {name_a}")
    check_size(b, name_b, 1, a.shape[1], f"the feature dim of {name_a}")
    check_same_device(**{name_a: a, name_b: b})
    return a, b


def check_group_ids(group_ids: object, n: int, device: torch.device) -> Tensor | None:
    """Check optional ``group_ids [B]`` (integer); return them as int64 on ``device``."""
    if group_ids is None:
        return None
    check_index(group_ids, "group_ids", 1, layout="[B]")
    assert isinstance(group_ids, Tensor)
    check_size(group_ids, "group_ids", 0, n, "the batch size")
    check_same_device(features=torch.empty(0, device=device), group_ids=group_ids)
    return group_ids.long()


def prepare(t: Tensor, dtype: torch.dtype) -> Tensor:
    """Cast to the compute ``dtype`` (fp16/bf16 -> fp32). L2 normalisation happens where the
    features are consumed (fused into the engine, so no normalised copy's gradient is kept)."""
    return to_float32(t).to(dtype)


def dtype_of(*ts: Tensor | None) -> torch.dtype:
    """Compute dtype: float64 if any input is float64, else float32 (also for fp16/bf16)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in ts) else torch.float32


def _no_autocast(inputs: tuple[Any, ...]) -> torch.autocast:
    """Autocast off on the inputs' device: logits are formed in fp32 even inside
    ``torch.autocast`` regions (fp16/bf16 features are upcast by :func:`prepare`)."""
    first = next((t for t in inputs if isinstance(t, Tensor)), None)
    device_type = first.device.type if first is not None else "cpu"
    return torch.autocast(device_type=device_type, enabled=False)


# ---------------------------------------------------------------- base class
class ContrastiveLoss(losskit.Loss[C], Generic[C]):
    """Base of the contrastive losses: holds the logit scale (and bias) and gathers.

    ``log_logit_scale`` (``nn.Parameter``, init ``log(1/temperature)``) exists when
    ``learnable_temperature``; ``logit_scale = exp(log_logit_scale)`` clamped to
    ``max_logit_scale`` in forward (CLIP). Otherwise ``1/config.temperature`` (also
    clamped) is read at every call, so a :class:`losskit.Curriculum` can schedule it.
    The bias, where a loss has one, is an ``nn.Parameter`` ``logit_bias`` when
    ``learnable_bias``, else read from ``config.logit_bias``.
    """

    def __init__(self, config: C | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        self.log_logit_scale: nn.Parameter | None
        self.logit_bias: nn.Parameter | None
        if cfg.learnable_temperature:
            self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)))
        else:
            self.register_parameter("log_logit_scale", None)
        bias = getattr(cfg, "logit_bias", None)
        if bias is not None and getattr(cfg, "learnable_bias", False):
            self.logit_bias = nn.Parameter(torch.tensor(float(bias)))
        else:
            self.register_parameter("logit_bias", None)

    def compute(self, *inputs: Any, **kwargs: Any) -> losskit.LossOutput:
        """The loss with its parts and metrics (call signature: see the class docstring)."""
        with _no_autocast(inputs):
            return self._run(*inputs, metrics=True, **kwargs)

    def forward(self, *inputs: Any, **kwargs: Any) -> Tensor:
        """``compute(...).loss``, skipping the metrics' extra passes over the logits."""
        with _no_autocast(inputs):
            return self._run(*inputs, metrics=False, **kwargs).loss

    def _run(self, *inputs: Any, metrics: bool, **kwargs: Any) -> losskit.LossOutput:
        raise NotImplementedError

    def _pair_inputs(self, image_features: Any, text_features: Any, group_ids: Any) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor | None]:
        """Check and prepare ``(image [B, D], text [B, D], group_ids [B])``; return them
        with the current scale and bias in the compute dtype."""
        img, txt = check_features(image_features, text_features, "image_features", "text_features")
        groups = check_group_ids(group_ids, img.shape[0], img.device)
        dtype = dtype_of(img, txt)
        a, b = prepare(img, dtype), prepare(txt, dtype)
        return a, b, groups, self.scale(dtype, a.device), self.bias(dtype, a.device)

    def learnable_fields(self) -> dict[str, str]:
        fields = {}
        if self.log_logit_scale is not None:
            fields["temperature"] = "log_logit_scale"
        if self.logit_bias is not None:
            fields["logit_bias"] = "logit_bias"
        return fields

    def scale(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Current clamped logit scale, a 0-d tensor (differentiable when learnable)."""
        cfg = self.config
        if self.log_logit_scale is not None:
            return self.log_logit_scale.to(dtype).exp().clamp(max=cfg.max_logit_scale)
        return torch.tensor(min(1.0 / cfg.temperature, cfg.max_logit_scale), dtype=dtype, device=device)

    def bias(self, dtype: torch.dtype, device: torch.device) -> Tensor | None:
        """Current logit bias (0-d) or None when the loss has none."""
        if self.logit_bias is not None:
            return self.logit_bias.to(dtype)
        value = getattr(self.config, "logit_bias", None)
        return None if value is None else torch.tensor(float(value), dtype=dtype, device=device)

    def gathering(self) -> bool:
        """Whether this call gathers features across processes (``config.distributed``)."""
        return dist.use_gather(self.config.distributed)

    def scale_metrics(self, scale: Tensor, bias: Tensor | None) -> dict[str, Tensor]:
        out = {"logit_scale": scale, "temperature": 1.0 / scale}
        if bias is not None:
            out["logit_bias"] = bias
        return out


# ---------------------------------------------------------------- layout across ranks
@dataclass
class Layout:
    """How one side ``a [n, D]`` is scored against the other side ``b``.

    ``rows`` are the anchors this process scores (local shard with ``local_loss``,
    else every gathered sample), ``cols`` every gathered candidate; ``pairs`` marks
    the positives of ``[len(rows), len(cols)]``. ``square`` is True when rows and
    cols are the same global batch (one matrix then serves both directions).
    """

    rows: Tensor
    cols: Tensor
    pairs: Pairs
    square: bool


def layout(
    a: Tensor,
    b: Tensor,
    group_ids: Tensor | None,
    *,
    gather: bool,
    local_loss: bool,
    mask: Tensor | None = None,
) -> tuple[Layout, Callable[[], Layout]]:
    """Arrange ``a -> b`` (and lazily ``b -> a``) for this process.

    Without gathering both are the local batch. With gathering, features are
    all-gathered with gradient (:func:`losskit.distributed.all_gather_with_grad`) and
    ``group_ids`` (global ids) without; with ``local_loss`` rows stay local and the
    matching pair of local row ``i`` is global column ``rank * n + i``.
    """
    n = a.shape[0]
    if not gather:
        pairs = _pairs(n, n, 0, group_ids, group_ids, mask, a.device)
        return Layout(a, b, pairs, True), lambda: Layout(b, a, _pairs(n, n, 0, group_ids, group_ids, None if mask is None else mask.T, a.device), True)
    if mask is not None:
        raise ValueError("positive_mask: not supported when gathering across processes; use group_ids (global ids)")
    a_all = dist.all_gather_with_grad(a, name="features")
    b_all = dist.all_gather_with_grad(b, name="features")
    g_all = None if group_ids is None else dist.all_gather_no_grad(group_ids, name="group_ids")
    if not local_loss:
        N = a_all.shape[0]
        return Layout(a_all, b_all, _pairs(N, N, 0, g_all, g_all, None, a.device), True), lambda: Layout(
            b_all, a_all, _pairs(N, N, 0, g_all, g_all, None, a.device), True
        )
    offset = dist.rank() * n
    N = b_all.shape[0]
    return Layout(a, b_all, _pairs(n, N, offset, group_ids, g_all, None, a.device), False), lambda: Layout(
        b, a_all, _pairs(n, N, offset, group_ids, g_all, None, a.device), False
    )


def _pairs(R: int, Cn: int, offset: int, gr: Tensor | None, gc: Tensor | None, mask: Tensor | None, device: torch.device) -> Pairs:
    if mask is not None:
        return Pairs.from_mask(mask)
    if gr is not None:
        assert gc is not None
        return Pairs.from_groups(gr, gc)
    return _diagonal(R, Cn, offset, device)


@functools.lru_cache(maxsize=16)
def _diagonal(R: int, Cn: int, offset: int, device: torch.device) -> Pairs:
    """Matching-pair labels, built once per shape (not on every call)."""
    return Pairs.diagonal(R, Cn, offset=offset, device=device)


# ---------------------------------------------------------------- metrics
def accuracy(pairs: Pairs, argmax: Tensor, by_rows: bool) -> Tensor:
    """Top-1 accuracy: share of rows (or columns) whose arg-max is one of their positives."""
    n = pairs.num_rows if by_rows else pairs.num_cols
    idx = torch.arange(n, device=argmax.device)
    inside = argmax < (pairs.num_cols if by_rows else pairs.num_rows)  # an explicit negative won
    safe = torch.where(inside, argmax, torch.zeros_like(argmax))
    hit = (pairs.is_positive(idx, safe) if by_rows else pairs.is_positive(safe, idx)) & inside
    count = pairs.row_count(torch.float32) if by_rows else pairs.col_count(torch.float32)
    has = count > 0  # rows (columns) without a positive do not count; none at all gives 0
    return (hit & has).sum().float() / has.sum().clamp_min(1).float()  # no host sync


def mean_logits(
    x: Tensor, y: Tensor, scale: Tensor, bias: Tensor | None, positive_logits: Tensor, *, normalize: bool
) -> dict[str, Tensor]:
    """Mean positive and mean negative logit of ``scale * x @ y.T + bias`` (rows L2-normalised
    first if ``normalize``) in ``O((R + C) D)``."""
    with torch.no_grad():
        if normalize:
            x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
        R, Cn = x.shape[0], y.shape[0]
        total = scale * (x.sum(0) @ y.sum(0)) + (R * Cn * bias if bias is not None else 0)
        n_pos = positive_logits.numel()
        pos_sum = positive_logits.sum()
        n_neg = R * Cn - n_pos
        neg = (total - pos_sum) / n_neg if n_neg > 0 else total.new_zeros(())
        pos = pos_sum / n_pos if n_pos > 0 else total.new_zeros(())
    return {"positive_logit": pos, "negative_logit": neg}
