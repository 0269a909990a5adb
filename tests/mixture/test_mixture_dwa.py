"""Dynamic Weight Average (Liu et al. 2019) over windows of steps, on a synthetic loss history."""

from __future__ import annotations

import math

import pytest
import torch

import losskit

HISTORY = [(1.0, 4.0), (3.0, 2.0), (0.9, 3.0), (1.1, 1.0), (0.5, 0.8), (0.7, 0.6), (0.2, 0.9), (0.4, 0.5), (0.3, 0.3)]


def reference_weights(history, window, temperature, k):
    """Python loops: the lambda used at each call, from the means of the two previous windows."""
    means, weights = [], []
    for call in range(len(history)):
        closed = len(means)
        if closed < 2:
            lam = [1.0] * k
        else:
            r = [means[-1][i] / means[-2][i] for i in range(k)]
            e = [math.exp(x / temperature) for x in r]
            lam = [k * x / sum(e) for x in e]
        weights.append(lam)
        if (call + 1) % window == 0:
            rows = history[call + 1 - window : call + 1]
            means.append([sum(row[i] for row in rows) / window for i in range(k)])
    return weights


def test_reference_by_hand():
    # windows of 2 calls; window means: (2, 3), (1, 2), (0.6, 0.7), (0.3, 0.7); the last call uses the last two
    r = [0.3 / 0.6, 0.7 / 0.7]
    want = [2 * math.exp(x / 2) / sum(math.exp(y / 2) for y in r) for x in r]
    assert reference_weights(HISTORY, 2, 2.0, 2)[-1] == pytest.approx(want)
    assert reference_weights(HISTORY, 2, 2.0, 2)[:4] == [[1.0, 1.0]] * 4  # two windows must close first


@pytest.mark.parametrize(("window", "temperature"), [(2, 2.0), (1, 0.5), (3, 2.0), (2, 10.0)])
def test_weights_follow_the_formula(make_echo_mixture, window, temperature):
    mixture = make_echo_mixture(2, weighting="dwa", dwa={"window": window, "temperature": temperature}, weights={"t1": 0.5})
    want = reference_weights(HISTORY, window, temperature, 2)
    assert want[-1] != pytest.approx([1.0, 1.0])  # the history reaches the adaptive regime
    for (a, b), lam in zip(HISTORY, want):
        out = mixture.compute(t0=(torch.tensor(a),), t1=(torch.tensor(b),))
        assert [out.metrics["dwa_lambda/t0"].item(), out.metrics["dwa_lambda/t1"].item()] == pytest.approx(lam)
        assert out.metrics["weight/t1"].item() == pytest.approx(0.5 * lam[1])
        assert out.loss.item() == pytest.approx(lam[0] * a + 0.5 * lam[1] * b)


def test_a_falling_loss_gets_less_weight(make_echo_mixture):
    mixture = make_echo_mixture(2, weighting="dwa", dwa={"window": 3, "temperature": 1.0})
    for step in range(9):
        out = mixture.compute(t0=(torch.tensor(0.5**step),), t1=(torch.tensor(1.0),))
    assert out.metrics["dwa_lambda/t0"] < 1.0 < out.metrics["dwa_lambda/t1"]
    assert (out.metrics["dwa_lambda/t0"] + out.metrics["dwa_lambda/t1"]).item() == pytest.approx(2.0)


def test_eval_mode_does_not_record(make_echo_mixture):
    mixture = make_echo_mixture(2, weighting="dwa", dwa={"window": 1})
    mixture.eval()
    for a, b in HISTORY:
        mixture(t0=(torch.tensor(a),), t1=(torch.tensor(b),))
    assert mixture.weighting.windows_done == 0
    mixture.train()
    mixture(t0=(torch.tensor(1.0),), t1=(torch.tensor(1.0),))
    assert mixture.weighting.windows_done == 1


def test_state_dict_mid_window_continues_exactly(make_echo_mixture, tmp_path):
    config = {"weighting": "dwa", "dwa": {"window": 3, "temperature": 0.5}}
    first = make_echo_mixture(2, **config)
    for a, b in HISTORY[:7]:
        first(t0=(torch.tensor(a),), t1=(torch.tensor(b),))
    torch.save(first.state_dict(), tmp_path / "ckpt.pt")
    second = make_echo_mixture(2, **config)
    second.load_state_dict(torch.load(tmp_path / "ckpt.pt"))
    assert second.weighting.calls_in_window == 1 and second.weighting.windows_done == 2
    for a, b in HISTORY[7:] + HISTORY:
        x = first(t0=(torch.tensor(a),), t1=(torch.tensor(b),))
        y = second(t0=(torch.tensor(a),), t1=(torch.tensor(b),))
        assert torch.equal(x, y)
