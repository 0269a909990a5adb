"""When the contrastive losses run the fused Triton kernels, and with which operands.

Imports nothing from Triton: the kernels (:mod:`losskit_plugins.contrastive.triton_function`)
are imported on the first call that runs them.

- :func:`fused_pairwise_loss` is the engine's Triton path (same options, same result as
  :func:`losskit_plugins.contrastive.engine.pairwise_loss`).
- :func:`keeps_half_operands`: on that path fp16 / bf16 features go into the kernels as
  they are (the ``tl.dot`` operands, fp32 accumulation; no fp32 copy of the features, half the
  gather traffic); elsewhere they are upcast to fp32 first. Options the kernels do not fuse
  (``hard_negative_beta``, ``debias_tau_plus``, and for ``infonce`` per-query negatives or no
  in-batch negatives) run the PyTorch dense path; ``infonce`` always passes fp32 operands.
"""

from __future__ import annotations

import torch
from torch import Tensor

from losskit.kernels import use_triton
from losskit_plugins.contrastive.config import ContrastiveConfig
from losskit_plugins.contrastive.engine import EngineOptions, EngineResult

__all__ = ["fused_pairwise_loss", "keeps_half_operands"]

_HALF = (torch.float16, torch.bfloat16)
_UNFUSED = ("hard_negative_beta", "debias_tau_plus")  # options that run the dense PyTorch path


def keeps_half_operands(cfg: ContrastiveConfig, a: Tensor, b: Tensor) -> bool:
    """Whether ``a``, ``b [B, D]`` (one half dtype) reach the fused kernels without an fp32 upcast."""
    if a.dtype not in _HALF or a.dtype != b.dtype or not use_triton(cfg.kernel, a.device):
        return False
    fields = type(cfg).model_fields  # (no getattr default: a missing attribute breaks torch.compile's graph)
    return all(getattr(cfg, name) == 0 for name in _UNFUSED if name in fields)


def fused_pairwise_loss(x: Tensor, y: Tensor, scale: Tensor, bias: Tensor, o: EngineOptions) -> EngineResult:
    """The engine's result for ``x [R, D]``, ``y [C, D]`` (fp16 / bf16 / fp32) from the fused kernels;
    ``scale`` and ``bias`` 0-d (the bias is 0 when ``o.has_bias`` is False)."""
    from losskit_plugins.contrastive.triton_function import FusedPairwise

    if x.dtype != y.dtype:  # e.g. bf16 rows against fp32 explicit negatives
        x, y = x.float(), y.float()
    return EngineResult(*FusedPairwise.apply(x, y, scale, bias, o))
