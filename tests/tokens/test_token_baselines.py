"""The bench baselines of the token losses: the LM-head three-matmul floor and the transformers-style path."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

import losskit
from losskit.bench import LOSS_IMPL, load_report
from losskit.cli import main
from transformers.loss.loss_utils import ForCausalLMLoss

from losskit_plugins.tokens import lm_head_matmul_floor, transformers_style_ce, transformers_style_linear_ce

B, T, H, V = 2, 3, 4, 7


def _head(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(B, T, H, generator=gen, dtype=dtype, requires_grad=True)
    weight = torch.randn(V, H, generator=gen, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, V, (B, T), generator=gen)
    labels[:, 0] = -100
    return hidden, weight, labels


def test_floor_does_exactly_the_three_lm_head_matmuls():
    hidden, weight, labels = _head()
    with FlopCounterMode(display=False) as counter:
        value = lm_head_matmul_floor(hidden, weight, labels)
        value.backward()
    # forward Z = h W^T, backward Z W and Z^T h: three N x H x V products (2 flops per multiply-add)
    assert counter.get_total_flops() == 3 * 2 * (B * T) * H * V
    assert set(counter.get_flop_counts()["Global"]) == {torch.ops.aten.mm}
    assert value.item() == 0.0
    h, w = hidden.detach().reshape(-1, H), weight.detach()
    z = h @ w.T  # [N, V], stands in for the logits' gradient
    torch.testing.assert_close(hidden.grad, (z @ w).reshape(B, T, H))
    torch.testing.assert_close(weight.grad, z.T @ h)


def test_transformers_style_baselines_are_for_causal_lm_loss():
    hidden, weight, labels = _head(torch.float32)
    logits = hidden @ weight.T
    want = ForCausalLMLoss(logits, labels, vocab_size=V)
    torch.testing.assert_close(transformers_style_ce(logits, labels), want)
    torch.testing.assert_close(transformers_style_linear_ce(hidden, weight, labels), want)


def test_losskit_bench_times_linear_token_ce_against_the_floor(tmp_path, capsys):
    out = tmp_path / "lm_head.json"
    fast = ["--repeat", "1", "--warmup", "1", "--min-run-time", "0.001", "--no-progress", "--no-memory"]
    assert main(["bench", "linear_token_ce", "--size", "tiny", "--json", str(out), *fast]) == 0
    assert "three_matmul_floor" in capsys.readouterr().out
    (case,) = load_report(out).cases
    assert case.size == dict(losskit.get_spec("linear_token_ce").bench.sizes["tiny"])
    impls = {r.impl: r for r in case.impls}
    assert set(impls) == {LOSS_IMPL, "transformers_style", "F.cross_entropy", "three_matmul_floor"}
    floor = impls["three_matmul_floor"]
    assert floor.status == "ok", floor.error
    assert "three_matmul_floor" in case.ratios
