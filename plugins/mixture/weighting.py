"""Weightings of the ``mixture`` loss: how the term losses ``L [T]`` become one total.

Every weighting gets the term losses (scalars, stacked to ``[T]``), reads the static
weights ``w [T]`` from the config, and returns the total, the effective weight of each
term (the factor in front of ``L_i``, detached) and diagnostics. No weighting reads a
tensor back to the host: the config's numbers reach the device as a cached vector,
copied again (asynchronously, from pinned memory on CUDA) only when they change.

- ``static``: ``sum_i w_i L_i``.
- ``uncertainty`` (Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to
  Weigh Losses", CVPR 2018): learnable ``s_i = log(sigma_i^2)``;
  ``sum_i w_i (c_i exp(-s_i) L_i + s_i / 2)`` with ``c_i = 1/2`` for a regression term
  (Gaussian likelihood: ``L/(2 sigma^2) + log sigma``) and ``c_i = 1`` for a
  classification term (``L/sigma^2 + log sigma``).
- ``dwa`` (Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention",
  CVPR 2019): ``lambda_i = T softmax_i(r / temp)``, ``r_i = Lbar_i(k-1) / Lbar_i(k-2)``
  where ``Lbar(k)`` is the mean loss over training window ``k`` (of ``window`` calls;
  the paper uses epochs); ``lambda = 1`` for the first two windows. Total
  ``sum_i w_i lambda_i L_i``.
- ``gradnorm`` (Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss
  Balancing in Deep Multitask Networks", ICML 2018): learnable weights ``g [T]`` kept at
  ``sum g = T``. The returned total is ``sum_i g_i L_i`` with ``g`` detached, plus
  ``L_grad - L_grad.detach()`` (zero in value) so that the user's single ``backward()``
  gives ``g`` exactly the gradient of ``L_grad = sum_i |g_i n_i - mean(g n) r_i^alpha|``,
  where ``n_i = ||d L_i / d W||`` over the shared parameters ``W`` (computed with
  ``torch.autograd.grad``, which accumulates nothing into ``.grad``), ``r_i`` the
  relative inverse training rate ``(L_i / L_i(0)) / mean_j(L_j / L_j(0))``, and the
  target treated as a constant, as in the paper. Network parameters get the gradient of
  the weighted sum only. The weights are renormalised (after a floor at
  ``min_weight``) at the start of every training call, i.e. after each optimiser step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from losskit_plugins.mixture.config import MixtureConfig

__all__ = ["Combined", "DWAWeighting", "GradNormWeighting", "StaticWeighting", "UncertaintyWeighting", "make_weighting"]


@dataclass
class Combined:
    """What a weighting returns: total ``[]``, effective weights ``[T]`` (detached), metrics."""

    total: Tensor
    weights: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


def device_vector(values: tuple[float, ...], like: Tensor) -> Tensor:
    """``values`` as a ``[len(values)]`` tensor with ``like``'s dtype and device, without a host sync:
    on CUDA the copy leaves pinned memory asynchronously (a pageable copy would wait for the GPU)."""
    host = torch.tensor(values, dtype=like.dtype)
    if like.device.type == "cuda":
        return host.pin_memory().to(like.device, non_blocking=True)
    return host.to(like.device)


class StaticWeighting(nn.Module):
    """``sum_i w_i L_i`` with the config's static weights."""

    def __init__(self, config: MixtureConfig) -> None:
        super().__init__()
        self.config = config
        self.names = list(config.terms)
        self._cache: tuple[tuple[Any, ...], Tensor] | None = None

    def cached_vector(self, values: tuple[float, ...], like: Tensor) -> Tensor:
        """:func:`device_vector` of ``values``, rebuilt only when the values, dtype or device change."""
        key = (values, like.dtype, like.device)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, device_vector(values, like))
        return self._cache[1]

    def static_weights(self, like: Tensor) -> Tensor:
        """The config's ``weights`` ``[T]`` on ``like``'s device."""
        return self.cached_vector(tuple(self.config.weights[n] for n in self.names), like)

    def combine(self, losses: Tensor, term_losses: Sequence[Tensor]) -> Combined:
        """``losses [T]``; ``term_losses`` are the T scalars stacked in ``losses``."""
        static = self.static_weights(losses)
        return Combined((static * losses).sum(), static)

    def named_metrics(self, prefix: str, values: Tensor) -> dict[str, Tensor]:
        """``{prefix/<term>: values[i]}`` for a ``[T]`` tensor."""
        return {f"{prefix}/{name}": values[i].detach() for i, name in enumerate(self.names)}


class UncertaintyWeighting(StaticWeighting):
    """Homoscedastic-uncertainty weighting with learnable log-variances ``log_vars[term]``."""

    def __init__(self, config: MixtureConfig) -> None:
        super().__init__(config)
        self.log_vars = nn.ParameterDict(
            {name: nn.Parameter(torch.tensor(config.term_options[name].init_log_var)) for name in self.names}
        )

    def combine(self, losses: Tensor, term_losses: Sequence[Tensor]) -> Combined:
        s = torch.stack([self.log_vars[name] for name in self.names]).to(losses.dtype)  # [T]
        if self.config.uncertainty.clamp is not None:
            s = s.clamp(*self.config.uncertainty.clamp)
        weights = [self.config.weights[n] for n in self.names]
        factor = [w * (0.5 if self.config.term_options[n].task == "regression" else 1.0) for w, n in zip(weights, self.names)]
        coefficients = self.cached_vector((*factor, *(0.5 * w for w in weights)), losses).view(2, -1)  # [2, T]
        scale = coefficients[0] * torch.exp(-s)  # [T]: w_i c_i exp(-s_i)
        total = (scale * losses).sum() + (coefficients[1] * s).sum()
        return Combined(total, scale.detach(), self.named_metrics("log_var", s))


class DWAWeighting(StaticWeighting):
    """Dynamic Weight Average over windows of training calls; its statistics are in ``state_dict``."""

    def __init__(self, config: MixtureConfig) -> None:
        super().__init__(config)
        t = len(self.names)
        self.register_buffer("window_sum", torch.zeros(t, dtype=torch.float64))  # [T] sum over the open window
        self.register_buffer("window_means", torch.ones(2, t, dtype=torch.float64))  # [2, T] means of the last two
        self.calls_in_window = 0
        self.windows_done = 0

    def dwa_weights(self) -> Tensor:
        """``lambda [T]`` from the last two closed windows (ones before two windows closed)."""
        if self.windows_done < 2:
            return torch.ones_like(self.window_sum)
        ratio = self.window_means[1] / self.window_means[0].clamp_min(torch.finfo(torch.float64).tiny)  # [T]
        return len(self.names) * torch.softmax(ratio / self.config.dwa.temperature, dim=0)

    def combine(self, losses: Tensor, term_losses: Sequence[Tensor]) -> Combined:
        lam = self.dwa_weights().to(losses)  # [T]
        if self.training:
            self._record(losses.detach())
        weights = self.static_weights(losses) * lam
        return Combined((weights * losses).sum(), weights.detach(), self.named_metrics("dwa_lambda", lam))

    @torch.no_grad()
    def _record(self, losses: Tensor) -> None:
        self.window_sum += losses.to(self.window_sum)
        self.calls_in_window += 1
        if self.calls_in_window < self.config.dwa.window:
            return
        mean = self.window_sum / self.calls_in_window
        if self.config.dwa.sync_distributed and dist.is_available() and dist.is_initialized():
            dist.all_reduce(mean)
            mean /= dist.get_world_size()
        self.window_means.copy_(torch.stack([self.window_means[1], mean]))
        self.window_sum.zero_()
        self.calls_in_window = 0
        self.windows_done += 1

    def get_extra_state(self) -> dict[str, int]:
        return {"calls_in_window": self.calls_in_window, "windows_done": self.windows_done}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.calls_in_window = int(state["calls_in_window"])
        self.windows_done = int(state["windows_done"])


class GradNormWeighting(StaticWeighting):
    """GradNorm: learnable ``weights [T]`` trained by the user's own ``backward()``."""

    def __init__(self, config: MixtureConfig) -> None:
        super().__init__(config)
        w = torch.tensor([config.weights[n] for n in self.names], dtype=torch.float32)
        self.weights = nn.Parameter(w * len(self.names) / w.sum())
        self.register_buffer("initial_losses", torch.ones(len(self.names)))  # [T] L_i(0)
        self.has_initial_losses = False
        self.shared: list[nn.Parameter] = []

    def set_shared_parameters(self, params: Iterable[Tensor]) -> None:
        """The shared parameters ``W`` whose gradient norms GradNorm balances (not registered here)."""
        self.shared = [p for p in params if p.requires_grad]
        if not self.shared:
            raise ValueError("params: expected at least one shared parameter that requires grad")

    def normalised(self) -> Tensor:
        """The weights floored at ``min_weight`` and scaled to sum to the number of terms ``[T]``."""
        w = self.weights.detach().clamp_min(self.config.gradnorm.min_weight)
        return w * (len(self.names) / w.sum())

    def combine(self, losses: Tensor, term_losses: Sequence[Tensor]) -> Combined:
        train = self.training and torch.is_grad_enabled()
        if train:
            with torch.no_grad():
                self.weights.copy_(self.normalised())
        weights = self.normalised().to(losses.dtype)  # [T], a copy: later in-place updates cannot touch the graph
        total = (weights * losses).sum()
        if not train:
            return Combined(total, weights)
        if not self.shared:
            raise RuntimeError(
                "weighting 'gradnorm' needs the shared parameters: call "
                "mixture.set_shared_parameters(model.<last shared layer>.parameters()) once after building"
            )
        if not self.has_initial_losses:
            self.initial_losses.copy_(losses.detach())
            self.has_initial_losses = True
        norms = torch.stack([self._grad_norm(loss) for loss in term_losses]).to(losses)  # [T] ||dL_i/dW||
        g = self.weights.to(losses.dtype) * norms  # [T] G_i = ||d(g_i L_i)/dW||, differentiable in g
        with torch.no_grad():
            rate = losses / self.initial_losses.to(losses).clamp_min(torch.finfo(losses.dtype).tiny)  # [T]
            target = g.mean() * (rate / rate.mean()) ** self.config.gradnorm.alpha  # [T], a constant
        l_grad = (g - target).abs().sum()
        metrics = {**self.named_metrics("grad_norm", g), "gradnorm_loss": l_grad.detach()}
        return Combined(total + (l_grad - l_grad.detach()), weights, metrics)

    def _grad_norm(self, loss: Tensor) -> Tensor:
        device = self.shared[0].device
        if not loss.requires_grad:
            return torch.zeros((), device=device)
        grads = torch.autograd.grad(loss, self.shared, retain_graph=True, allow_unused=True)
        squares = [g.detach().float().pow(2).sum() for g in grads if g is not None]
        return torch.stack(squares).sum().sqrt() if squares else torch.zeros((), device=device)

    def get_extra_state(self) -> dict[str, Any]:
        return {"has_initial_losses": self.has_initial_losses}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.has_initial_losses = bool(state["has_initial_losses"])


_WEIGHTINGS: dict[str, type[StaticWeighting]] = {
    "static": StaticWeighting,
    "uncertainty": UncertaintyWeighting,
    "dwa": DWAWeighting,
    "gradnorm": GradNormWeighting,
}


def make_weighting(config: MixtureConfig) -> StaticWeighting:
    """The weighting module named by ``config.weighting``."""
    return _WEIGHTINGS[config.weighting](config)
