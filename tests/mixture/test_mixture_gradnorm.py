"""GradNorm (Chen et al. 2018): hand-computed weight gradients, renormalisation, toy two-task balance."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import losskit


class TwoTask(nn.Module):
    """A shared linear layer and two heads; task 0 is ``scale`` times steeper than task 1."""

    def __init__(self, scale: float = 10.0, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.shared = nn.Linear(4, 8)
        self.heads = nn.ModuleList([nn.Linear(8, 1), nn.Linear(8, 1)])
        self.scale = scale

    def forward(self, x):
        h = torch.tanh(self.shared(x))
        return self.scale * self.heads[0](h).squeeze(1), self.heads[1](h).squeeze(1)


def mse_mixture(**extra):
    return losskit.build({
        "name": "mixture",
        "terms": {"a": {"name": "echo"}, "b": {"name": "echo"}},
        "weighting": "gradnorm",
        **extra,
    })


def task_losses(model, x, ya, yb):
    pa, pb = model(x)
    return ((pa - ya) ** 2).mean(), ((pb - yb) ** 2).mean()


def data(seed=1, n=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, torch.randn(n, generator=g), torch.randn(n, generator=g)


def test_weight_gradient_matches_hand_computation_and_network_gets_the_weighted_sum(echo_plugin):
    model = TwoTask()
    mixture = mse_mixture(weights={"a": 3.0, "b": 1.0}, gradnorm={"alpha": 0.7})
    mixture.set_shared_parameters(model.shared.parameters())
    x, ya, yb = data()
    w = mixture.weighting.weights
    assert w.tolist() == pytest.approx([1.5, 0.5])  # initial weights renormalised to sum to 2

    # step 1 records L(0); step 2 has a non-trivial training rate
    for step in range(2):
        la, lb = task_losses(model, x, ya, yb)
        if step == 1:
            la, lb = la * 0.5, lb * 0.9  # pretend task a trained faster
        model.zero_grad()
        w.grad = None
        out = mixture.compute(a=(la,), b=(lb,))
        out.loss.backward()

    # hand computation of the GradNorm gradient of the weights
    la, lb = task_losses(model, x, ya, yb)
    la, lb = la * 0.5, lb * 0.9
    shared = list(model.shared.parameters())
    norms = [torch.cat([g.flatten() for g in torch.autograd.grad(loss, shared, retain_graph=True)]).norm() for loss in (la, lb)]
    g = torch.stack([w[0] * norms[0], w[1] * norms[1]]).detach()
    initial = torch.stack(task_losses(model, x, ya, yb)).detach()
    rate = torch.stack([la, lb]).detach() / initial
    target = g.mean() * (rate / rate.mean()) ** 0.7
    want_grad = torch.sign(g - target) * torch.stack(norms)
    torch.testing.assert_close(w.grad, want_grad)
    assert out.metrics["gradnorm_loss"].item() == pytest.approx((g - target).abs().sum().item(), rel=1e-5)

    # the value is the weighted sum, and the network received exactly its gradient
    weighted = w[0].detach() * la + w[1].detach() * lb
    assert out.loss.item() == pytest.approx(weighted.item(), rel=1e-6)
    want_net = torch.autograd.grad(weighted, list(model.parameters()))
    for p, want in zip(model.parameters(), want_net):
        torch.testing.assert_close(p.grad, want)



def test_the_training_call_calls_no_backward(echo_plugin):
    """The norms come from torch.autograd.grad: nothing reaches any .grad until the user's own backward()."""
    model = TwoTask()
    mixture = mse_mixture()
    mixture.set_shared_parameters(model.shared.parameters())
    la, lb = task_losses(model, *data())
    out = mixture.compute(a=(la,), b=(lb,))
    params = [*model.parameters(), *mixture.parameters()]
    assert all(p.grad is None for p in params)
    assert out.metrics["gradnorm_loss"].item() > 0.0  # the GradNorm term was really computed
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)

def test_weights_are_renormalised_at_each_training_call(echo_plugin):
    mixture = mse_mixture(gradnorm={"min_weight": 0.01})
    model = TwoTask()
    mixture.set_shared_parameters(model.shared.parameters())
    with torch.no_grad():
        mixture.weighting.weights.copy_(torch.tensor([3.0, -1.0]))  # an optimizer step overshot
    la, lb = task_losses(model, *data())
    out = mixture.compute(a=(la,), b=(lb,))
    assert mixture.weighting.weights.tolist() == pytest.approx([2 * 3.0 / 3.01, 2 * 0.01 / 3.01])
    assert out.metrics["weight/a"].item() + out.metrics["weight/b"].item() == pytest.approx(2.0)


def test_shared_parameters_are_required_for_training_only(echo_plugin):
    mixture = mse_mixture()
    v = torch.tensor(1.0, requires_grad=True)
    with pytest.raises(RuntimeError, match="set_shared_parameters"):
        mixture(a=(v,), b=(v,))
    mixture.eval()
    assert mixture(a=(v,), b=(v,)).item() == 2.0
    with pytest.raises(ValueError, match="at least one shared parameter"):
        mixture.set_shared_parameters([torch.zeros(2)])
    with pytest.raises(RuntimeError, match="'gradnorm'"):
        losskit.build({"name": "mixture", "terms": {"a": {"name": "echo"}}}).set_shared_parameters([v])


def test_gradnorm_weights_are_learnable_fields(echo_plugin):
    mixture = mse_mixture()
    assert mixture.learnable_fields() == {"weights.a": "weighting.weights", "weights.b": "weighting.weights"}
    with pytest.raises(losskit.errors.ConfigError, match="learnable parameter"):
        losskit.Curriculum(mixture, {"weights.a": {"kind": "constant", "value": 1.0}})


@pytest.mark.parametrize("alpha", [0.0, 1.5])
@pytest.mark.parametrize("scale", [3.0, 10.0])
def test_gradnorm_balances_gradient_norms_on_a_toy_two_task_model(echo_plugin, alpha, scale):
    model = TwoTask(scale=scale)
    mixture = mse_mixture(gradnorm={"alpha": alpha})
    mixture.set_shared_parameters(model.shared.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    opt_weights = torch.optim.Adam(mixture.parameter_groups(), lr=0.02)
    x, ya, yb = data()

    initial = []

    def imbalance(out):
        """|log(G_a / G_b) - alpha log(r_a / r_b)|: zero when the norms match GradNorm's targets."""
        rates = [out.parts[t].item() / initial[i] for i, t in enumerate("ab")]
        log_g = (out.metrics["grad_norm/a"] / out.metrics["grad_norm/b"]).log().item()
        return abs(log_g - alpha * math.log(rates[0] / rates[1]))

    imbalances = []
    for _ in range(150):
        opt.zero_grad()
        opt_weights.zero_grad()
        la, lb = task_losses(model, x, ya, yb)
        initial = initial or [la.item(), lb.item()]
        out = mixture.compute(a=(la,), b=(lb,))
        out.loss.backward()
        opt.step()
        opt_weights.step()
        imbalances.append(imbalance(out))
    w = mixture.weighting.normalised()  # what the next call uses (the last step left them unnormalised)
    assert imbalances[0] > 0.5  # task a starts with a much larger gradient norm
    assert sum(imbalances[-10:]) / 10 < 0.2 * imbalances[0]  # GradNorm closes most of the gap
    assert w[0] < 1.0 < w[1] and w.sum().item() == pytest.approx(2.0)


def test_gradient_accumulation_over_two_calls(echo_plugin):
    """Two training calls, then one backward: the in-place renormalisation must not break the first graph."""
    model = TwoTask()
    mixture = mse_mixture(weights={"a": 1.0, "b": 3.0})
    mixture.set_shared_parameters(model.shared.parameters())
    x, ya, yb = data()
    first = mixture(a=(task_losses(model, x, ya, yb)[0],), b=(task_losses(model, x, ya, yb)[1],))
    with torch.no_grad():
        mixture.weighting.weights.mul_(2.0)  # as if an optimizer had stepped in between
    la, lb = task_losses(model, x[:16], ya[:16], yb[:16])
    second = mixture(a=(la,), b=(lb,))
    (first + second).backward()
    assert mixture.weighting.weights.grad is not None and torch.isfinite(mixture.weighting.weights.grad).all()
    assert all(p.grad is not None for p in model.shared.parameters())
