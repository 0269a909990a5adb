"""``token_box`` against other implementations where their definitions meet.

- the box terms equal ``bbox`` applied to the decoded expected boxes (values and gradients);
- NTL-MSE and NTL-Wasserstein equal the ``ntloss`` package's ``NTLossDotProduct`` and
  ``NTLoss`` (Zausinger et al., ICML 2025; ``reweigh=False``, as in the paper) when every
  digit of the labels sits in a well-formed box and the labels are not shifted (ntloss does
  not shift).
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import losskit
from losskit_plugins.token_box import from_tokenizer
from ntloss import NTLoss, NTLossDotProduct


def _decoded_boxes(ref, problem, logits):
    """``[M, 4]`` expected and labelled boxes, written by hand from the reference parse."""
    cfg = problem.config
    ids = ref.reference.__globals__["coordinate_ids"](cfg)
    value = ref.reference.__globals__["token_value"]
    values = torch.tensor([value(i, len(ids), cfg) for i in range(len(ids))], dtype=torch.float64)
    x = logits.reshape(-1, logits.shape[-1])
    lab = problem.labels.reshape(-1, problem.labels.shape[-1]) if problem.labels.dim() == 2 else problem.labels[None]
    if problem.shift:
        lab = torch.cat([lab[:, 1:], torch.full_like(lab[:, :1], -100)], 1)
    lo, hi = cfg.get("coord_range", (0.0, 1000.0)) if cfg["style"] == "digits" else (0.0, 1.0)
    preds, targets = [], []
    for r, row in enumerate(lab.tolist()):
        for _, numbers in ref.parse_row(row, cfg)[0]:
            p, t = [], []
            for positions in numbers:
                places = [10.0 ** (len(positions) - j - 1) if cfg["style"] == "digits" else 1.0 for j in range(len(positions))]
                probs = [torch.softmax(x[r * lab.shape[1] + pos][ids], 0) for pos in positions]
                p.append((sum(w * (q @ values) for w, q in zip(places, probs)) - lo) / (hi - lo))
                t.append((sum(w * values[ids.index(row[pos])] for w, pos in zip(places, positions)) - lo) / (hi - lo))
            preds.append(torch.stack(p))
            targets.append(torch.stack(t))
    if not preds:
        return None, None
    return torch.stack(preds), torch.stack(targets)


@settings(max_examples=20)
@given(st.data())
def test_box_terms_equal_bbox_on_the_decoded_expected_boxes(ref, data) -> None:
    problem = data.draw(ref.problems())
    cfg = problem.config | {"ntl_mse_weight": 0.0, "ntl_wasserstein_weight": 0.0, "reduction": "mean"}
    if cfg["l1_weight"] == 0 and (cfg["iou_loss"] == "none" or cfg["iou_weight"] == 0):
        cfg["l1_weight"] = 1.0  # bbox needs a term
    logits = problem.logits.clone().requires_grad_(True)
    out = losskit.build({"name": "token_box", **cfg}).compute(logits, problem.labels)
    pred, target = _decoded_boxes(ref, problem, logits)
    if pred is None:
        assert out.loss.item() == 0 and out.loss.requires_grad
        return
    box_fields = ("box_format", "l1_weight", "smooth_l1_beta", "iou_loss", "iou_weight", "eps", "reduction")
    bbox = losskit.build({"name": "bbox", "degenerate": "clamp", **{k: cfg[k] for k in box_fields if k in cfg}})
    want = bbox.compute(pred, target)
    torch.testing.assert_close(out.loss, want.loss, rtol=1e-10, atol=1e-12)
    for name, value in want.parts.items():
        torch.testing.assert_close(out.parts[name], value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.metrics["mean_iou"], want.metrics["mean_iou"], rtol=1e-10, atol=1e-12)
    (got,) = torch.autograd.grad(out.loss, logits)
    (expected,) = torch.autograd.grad(want.loss, logits)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def _boxed_digits(tok, gen: torch.Generator, b: int, t: int) -> torch.Tensor:
    """``[B, T]`` labels: each row a Qwen2-VL-style box with random 1-4 digit numbers, then padding."""
    rows = []
    for _ in range(b):
        numbers = torch.randint(0, 1001, (4,), generator=gen).tolist()
        text = "the cat is at <|box_start|>({},{}),({},{})<|box_end|>".format(*numbers)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        rows.append(ids + [-100] * (t - len(ids)))
    return torch.tensor(rows)


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000), reduction=st.sampled_from(["mean", "sum"]))
def test_ntl_terms_equal_the_ntloss_package(qwen_like_tokenizer, seed, reduction) -> None:
    tok = qwen_like_tokenizer
    gen = torch.Generator().manual_seed(seed)
    labels = _boxed_digits(tok, gen, 3, 30)
    v = len(tok)
    logits = (3 * torch.randn(3, 30, v, generator=gen, dtype=torch.float64)).requires_grad_(True)
    config = from_tokenizer(
        tok, "qwen2_vl", shift=False, reduction=reduction, l1_weight=0.0, iou_loss="none",
        ntl_mse_weight=1.0, ntl_wasserstein_weight=1.0,
    )
    out = losskit.build(config).compute(logits, labels)
    for name, reference in (("ntl_mse", NTLossDotProduct(tok, reweigh=False)), ("ntl_wasserstein", NTLoss(tok, reweigh=False))):
        want = reference(logits, labels, reduction=reduction)
        torch.testing.assert_close(out.parts[name], want, rtol=1e-10, atol=1e-12, msg=name)
        (got,) = torch.autograd.grad(out.parts[name], logits, retain_graph=True)
        (expected,) = torch.autograd.grad(want, logits)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12, msg=name)
